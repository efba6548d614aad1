"""Reading weights files safely: losslab checkpoints through `torch.load(weights_only=True)`, with a clear
error for a missing, empty, corrupt or foreign file."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from losslab.errors import LosslabError


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint saved by losslab; a missing, empty, corrupt or foreign file gives a LosslabError."""
    if not path.is_file():
        raise LosslabError(f"checkpoint {path} does not exist.")
    if path.stat().st_size == 0:
        raise LosslabError(f"checkpoint {path} is empty (0 bytes): a copy or a disk that filled up cut it short; "
                           "losslab itself replaces checkpoints whole. Use another copy of the file.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise LosslabError(f"checkpoint {path} could not be read as a losslab checkpoint: {load_failure(error)}"
                           ) from error
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise LosslabError(f"checkpoint {path} is not a losslab checkpoint (expected a dict with 'model' and 'epoch').")
    return state


def load_failure(error: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to load it unsafely: losslab never
    does (it would run whatever code the file names)."""
    text = str(error)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (f"it holds a Python object ({refused.group(1)}) that a safe load refuses. losslab reads checkpoints "
                "only with torch.load(weights_only=True), and the checkpoints it writes hold only tensors and plain "
                "values: this file was written by something else.")
    if "Weights only load failed" in text:
        return "it is not a file torch.save wrote (its contents are no pickle that torch can read safely)."
    return text or f"{type(error).__name__} (the file ends early: it was cut short)"

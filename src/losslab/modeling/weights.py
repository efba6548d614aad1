"""Reading weights files safely, always through `torch.load(weights_only=True)`: losslab checkpoints, and the
state dicts a run may start from (torchvision's, losslab's, anyone's), with a clear error for a missing, empty,
corrupt or foreign file."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
import yaml
from torch import Tensor

from losslab.errors import LosslabError


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint saved by losslab; a missing, empty, corrupt or foreign file gives a LosslabError."""
    if not path.is_file():
        raise LosslabError(f"checkpoint {path} does not exist.")
    state = _load(path, map_location, "checkpoint", "a losslab checkpoint")
    if not is_checkpoint(state):
        raise LosslabError(f"checkpoint {path} is not a losslab checkpoint (expected a dict with 'model' and 'epoch').")
    return state


def is_checkpoint(state: object) -> bool:
    return isinstance(state, dict) and "model" in state and "epoch" in state


def read_state_dict(path: Path) -> tuple[dict[str, Tensor], dict | None]:
    """The model weights in `path` and, for a losslab checkpoint, the `model` section of the config it was trained
    with (else None). `path` may hold a state dict (what `torch.save(model.state_dict(), path)` writes, as
    torchvision's weights files do), a losslab checkpoint, or a dict holding the state dict under "model" (as
    torchvision's reference scripts save)."""
    loaded = _load(path, "cpu", "weights file", "weights")
    model_config = None
    if is_checkpoint(loaded):
        model_config = (yaml.safe_load(loaded.get("config") or "") or {}).get("model")
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else loaded
    if not (isinstance(state, dict) and state and all(isinstance(v, Tensor) for v in state.values())):
        raise LosslabError(f"weights file {path} holds {type(state).__name__}, not a state dict (a dict of tensor "
                           "names to tensors): save weights with torch.save(model.state_dict(), path).")
    return state, model_config


def _load(path: Path, map_location: str | torch.device, name: str, kind: str):
    """torch.load(weights_only=True): tensors and plain containers only, so a file cannot run code."""
    if path.stat().st_size == 0:
        raise LosslabError(f"{name} {path} is empty (0 bytes): a copy or a disk that filled up cut it short; "
                           "losslab itself replaces its files whole. Use another copy of the file.")
    try:
        # A plain pickle (not torch.save's zip) makes torch warn about its pickle protocol and legacy format before
        # refusing it: the refusal below says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise LosslabError(f"{name} {path} could not be read as {kind}: {load_failure(error)}") from error


def load_failure(error: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, without torch's advice to load it unsafely: losslab never
    does (it would run whatever code the file names)."""
    text = str(error)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (f"it holds a Python object ({refused.group(1)}) that a safe load refuses. losslab reads checkpoints "
                "only with torch.load(weights_only=True), and the checkpoints it writes hold only tensors and plain "
                "values: this file was written by something else.")
    code = re.search(r"unsupported GLOBAL ([\w.]+) whose module ([\w.]+) is blocked", text)
    if code:
        return (f"it holds code ({code.group(1)}, of the module {code.group(2)}) that a safe load refuses to run. "
                "losslab reads checkpoints only with torch.load(weights_only=True), which never runs what a file "
                "names; a file that calls a function when loaded was not written by losslab and may be malicious.")
    if "Weights only load failed" in text:
        return "it is not a file torch.save wrote (its contents are no pickle that torch can read safely)."
    return text or f"{type(error).__name__} (the file ends early: it was cut short)"

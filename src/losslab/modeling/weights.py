"""Reading weights files safely: losslab checkpoints through `torch.load(weights_only=True)`, with a clear
error for a missing, corrupt or foreign file."""

from __future__ import annotations

from pathlib import Path

import torch

from losslab.errors import LosslabError


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint saved by losslab; a missing, corrupt or foreign file gives a LosslabError."""
    if not path.is_file():
        raise LosslabError(f"checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise LosslabError(f"checkpoint {path} could not be read as a losslab checkpoint: {error}") from error
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise LosslabError(f"checkpoint {path} is not a losslab checkpoint (expected a dict with 'model' and 'epoch').")
    return state

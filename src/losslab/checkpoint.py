"""Checkpoints written atomically and read back with weights_only=True."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from losslab.errors import LosslabError


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to a temporary file beside `path`, then rename it over `path`: a crash at any
    moment leaves either the old checkpoint or the new one, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def mirror_checkpoint(source: Path, path: Path) -> None:
    """Make `path` hold the same checkpoint as `source` (a hard link where the file system allows,
    so best.pt costs no extra disk while it equals last.pt), replacing `path` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
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

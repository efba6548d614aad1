"""Checkpoints: what they hold, written atomically (losslab.modeling.weights reads them back with
weights_only=True), and a run restored from one."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from losslab.modeling.heads import set_losses
from losslab.reporting.history import History
from losslab.training.session import Session

log = logging.getLogger(__name__)


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


def training_state(session: Session, rows: list[dict], cfg: DictConfig) -> dict:
    """Everything a resume needs (weights, optimizer, schedule, random streams, history, config, what the weights
    started from) and what inference needs (class names, the dataset's category ids)."""
    return {
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.schedulers.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler is not None else None,
        "rng": {"torch": torch.get_rng_state(), "train_loader": session.loaders["train"].generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if session.device.type == "cuda" else None},
        "epoch": rows[-1]["epoch"],
        "history": rows,
        "config": OmegaConf.to_yaml(cfg),
        "classes": list(session.data.classes),
        "category_ids": list(session.data.category_ids),
        "start": session.start,
    }


def save_epoch_checkpoints(run_dir: Path, state: dict, improved: bool) -> None:
    """checkpoints/last.pt, and best.pt when the epoch `improved` on the best so far."""
    last = run_dir / "checkpoints" / "last.pt"
    save_checkpoint(last, state)
    if improved:
        mirror_checkpoint(last, run_dir / "checkpoints" / "best.pt")


def restore(session: Session, checkpoint: dict, history: History) -> int:
    """Load weights, optimizer, schedule, random streams and history; return the last finished epoch."""
    session.model.load_state_dict(checkpoint["model"])
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    session.schedulers.load_state_dict(checkpoint["scheduler"])
    if session.scaler is not None and checkpoint.get("scaler"):
        session.scaler.load_state_dict(checkpoint["scaler"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    session.loaders["train"].generator.set_state(rng["train_loader"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    for row in checkpoint["history"]:
        history.add(row)
    epoch = checkpoint["epoch"]
    # The schedule's state already carries the phase's lr factor: switch the losses, not the lr.
    session.phase = session.schedule.phase_at(epoch)
    if session.phase is not None:
        set_losses(session.model, session.phase_losses[session.phase.number])
    log.info("resuming after epoch %d: metrics.csv keeps epochs 1-%d; the weights are the checkpoint's%s", epoch, epoch,
             f" (model.weights={session.start['weights']} is not loaded again)"
             if session.start and session.start.get("weights") else "")
    return epoch

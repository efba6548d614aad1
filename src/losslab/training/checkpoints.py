"""Checkpoints: what they hold, written atomically (losslab.modeling.weights reads them back with
weights_only=True), what a finished run keeps of them, and a run restored from one.

Two kinds, both dicts of tensors and plain values:
- the resume state (checkpoints/last.pt while a run can go on): weights, optimizer, schedule, random streams,
  history, config, classes;
- the weights (checkpoints/best.pt, and last.pt of a finished run that keeps no resume state): what evaluate,
  predict, export and `model.weights=RUN_DIR` need -- weights, classes, category ids, config, epoch and its
  metrics row -- about the size of the model's own state_dict.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from losslab.config.plan import kept
from losslab.modeling.heads import set_losses
from losslab.reporting.history import History
from losslab.run_lock import RESUME_STATE
from losslab.training.session import Session

log = logging.getLogger(__name__)

WEIGHTS_KEYS = ("model", "epoch", "config", "classes", "category_ids", "metrics")
RESUME_KEYS = RESUME_STATE  # what the weights lack


def resume_state(session: Session, rows: list[dict], config: str) -> dict:
    """Everything a resume needs (weights, optimizer, schedule, random streams, history, config, what the weights
    started from) and what inference needs (class names, the dataset's category ids, the epoch's metrics)."""
    return {
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.schedulers.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler is not None else None,
        "rng": {"torch": torch.get_rng_state(), "train_loader": session.loaders["train"].generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if session.device.type == "cuda" else None},
        "epoch": rows[-1]["epoch"],
        "history": rows,
        "metrics": rows[-1],
        "config": config,  # YAML, interpolations kept
        "classes": list(session.data.classes),
        "category_ids": list(session.data.category_ids),
        "start": session.start,
        "balanced_weights": session.balanced_weights,  # loss.balance=initial's: a resume keeps them
    }


def weights_of(state: dict, row: dict | None = None) -> dict:
    """The weights checkpoint of a resume state (with `row` as its metrics, default the state's own epoch)."""
    weights = {key: state[key] for key in WEIGHTS_KEYS if key in state}
    if row is not None:
        weights["metrics"] = row
    return weights


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to a temporary file beside `path`, then rename it over `path`: a crash at any
    moment leaves either the old checkpoint or the new one, never a torn file. A write that fails removes its
    partial file, and one that filled the disk raises OSError(ENOSPC) (torch's own error names no cause)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with _without_crc32():
            torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException as error:
        # Asked before the partial file goes, as that file may be what filled the disk.
        full = isinstance(error, Exception) and disk_full(tmp.parent)
        tmp.unlink(missing_ok=True)
        if full and not (isinstance(error, OSError) and error.errno == errno.ENOSPC):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        raise


FULL_BELOW = 1 << 20  # bytes: a failed write leaves less than this free on a disk it filled


def disk_full(folder: Path) -> bool:
    """Whether the file system of `folder` has (almost) no space left."""
    try:
        return shutil.disk_usage(folder).free < FULL_BELOW
    except OSError:
        return False


def _without_crc32():
    """Skip the zip format's CRC32 of every tensor, a large part of the time a checkpoint takes to write: a
    checkpoint is replaced whole by a rename, never torn, and torch.load does not read the checksum."""
    try:
        from torch.utils.serialization import config
    except ImportError:  # older torch has no such setting and always computes it
        return contextlib.nullcontext()
    return config.patch({"save.compute_crc32": False})


def mirror_checkpoint(source: Path, path: Path) -> None:
    """Make `path` hold the same checkpoint as `source` (a hard link where the file system allows, so it costs
    no extra disk), replacing `path` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def finish_checkpoints(folder: Path, choice: str, last: dict | None, best_epoch: int | None) -> None:
    """Reduce the checkpoints of a finished run that keeps no resume state to what `choice` keeps: last.pt becomes
    the weights of `last` (the final resume state) or goes, best.pt stays or goes. A last.pt of the best epoch is
    a hard link to best.pt, which then holds the same."""
    keep = kept(choice)
    last_path, best_path = folder / "last.pt", folder / "best.pt"
    if "best" not in keep:
        best_path.unlink(missing_ok=True)
    if "last" not in keep or last is None:
        last_path.unlink(missing_ok=True)
    elif "best" in keep and last["epoch"] == best_epoch and best_path.is_file():
        mirror_checkpoint(best_path, last_path)
    else:
        save_checkpoint(last_path, weights_of(last))
    if not keep and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds, read without loading its tensors (None if unreadable)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # any unreadable file is simply not the wanted one
        return None


def restore(session: Session, checkpoint: dict, history: History, max_epochs: int, on_extend: str) -> int:
    """Load weights, optimizer, schedule, random streams and history; return the last finished epoch.

    A run resumed with a trainer.max_epochs beyond the one it was planned for is extended: its lr then holds at
    that of the last planned epoch (`on_extend` last_lr) or follows the schedule re-planned over `max_epochs`
    (replan).
    """
    session.model.load_state_dict(checkpoint["model"])
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    epoch = checkpoint["epoch"]
    planned = OmegaConf.create(checkpoint["config"]).trainer.max_epochs
    extending = max_epochs > planned
    session.schedulers.load_state_dict(checkpoint["scheduler"], epoch, replan=extending and on_extend == "replan")
    if extending and on_extend == "last_lr":
        last_planned = next((row for row in checkpoint["history"] if row["epoch"] == planned),
                            checkpoint["history"][-1])
        session.schedulers.hold(planned, last_planned["lr"])
    if session.scaler is not None and checkpoint.get("scaler"):
        session.scaler.load_state_dict(checkpoint["scaler"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    session.loaders["train"].generator.set_state(rng["train_loader"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    for row in checkpoint["history"]:
        history.add(row)
    # The schedule's state already carries the phase's lr factor: switch the losses, not the lr.
    session.phase = session.schedule.phase_at(epoch)
    if session.phase is not None:
        set_losses(session.model, session.phase_losses[session.phase.number])
    log.info("resuming after epoch %d: metrics.csv keeps epochs 1-%d; the weights are the checkpoint's%s", epoch, epoch,
             f" (model.weights={session.start['weights']} is not loaded again)"
             if session.start and session.start.get("weights") else "")
    if extending:
        how = (f"the schedule re-planned over {max_epochs} epochs" if on_extend == "replan"
               else f"the lr of epoch {planned}, the last planned one")
        log.info("extending the run from %d to %d epochs: epoch %d trains at lr %.3g, %s (trainer.on_extend=%s)",
                 planned, max_epochs, epoch + 1, session.optimizer.param_groups[0]["lr"], how, on_extend)
    return epoch


def repair_best(folder: Path, checkpoint: dict, best: dict | None) -> None:
    """A run killed between writing last.pt and best.pt of its best epoch: write best.pt from last.pt."""
    path = folder / "best.pt"
    if best is not None and best["epoch"] == checkpoint["epoch"] and checkpoint_epoch(path) != checkpoint["epoch"]:
        save_checkpoint(path, weights_of(checkpoint, best))

"""Resuming a run in its own folder: its checkpoint opened (the folder's lock taken), or why there is nothing to
resume. The config it continues with comes from that checkpoint (losslab.config.run_config.resumed_plan)."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from losslab.config.plan import checkpoint_choice
from losslab.errors import LosslabError
from losslab.modeling.weights import read_checkpoint
from losslab.run_lock import RUN_FILES, claim, release, resume_file
from losslab.training.checkpoints import RESUME_KEYS
from losslab.training.run_folder import LEFTOVERS, remove_leftovers

log = logging.getLogger(__name__)



def open_checkpoint(run_dir: Path, own: bool = True) -> dict:
    """The resume state of the run in `run_dir` (checkpoints/last.pt), or a LosslabError saying why the folder
    cannot be resumed; with `own` (the main process) this process becomes the folder's owner first. Nothing is
    written into a folder that is refused."""
    # A last.pt that is not a whole checkpoint is read below all the same, so the refusal says what is wrong with it.
    if resume_file(run_dir) is None:
        raise LosslabError(f"resume={run_dir}: {not_resumable(run_dir)}")
    if own:
        claim(run_dir)
    try:
        path = run_dir / "checkpoints" / "last.pt"
        checkpoint = read_checkpoint(path)
        missing = [key for key in ("config", *RESUME_KEYS) if key not in checkpoint]
        if "config" in missing:
            raise LosslabError(f"resume={run_dir}: checkpoint {path} has no 'config' (the run's own config, which a "
                               "resume continues with); expected a checkpoint that losslab's train wrote.")
        if missing:
            raise LosslabError(f"resume={run_dir}: {path} holds the weights of epoch {checkpoint['epoch']} but no "
                               f"resume state ({', '.join(missing)}): {NO_RESUME_STATE}")
        if own:
            remove_leftovers(run_dir)
    except BaseException:
        if own:
            release(run_dir)
        raise
    return checkpoint


NO_RESUME_STATE = ("the run finished with trainer.keep_resume_state=false, which keeps only weights. To train longer, "
                   "start a new run from its weights (model.weights=RUN_DIR), or train it again with "
                   "trainer.keep_resume_state=true.")


def not_resumable(run_dir: Path) -> str:
    """Why `run_dir` holds nothing to resume, in one sentence."""
    if not run_dir.is_dir():
        return "no such folder; expected the folder of a losslab run (outputs/DATE/TIME)."
    if not any((run_dir / name).exists() for name in RUN_FILES):
        return ("that folder holds no losslab run (no checkpoints/last.pt, metrics.csv or summary.json); expected "
                "the folder of a run (outputs/DATE/TIME).")
    if (run_dir / "checkpoints" / "last.pt").is_file() or (run_dir / "checkpoints" / "best.pt").is_file():
        return f"there is no resume state in checkpoints/: {NO_RESUME_STATE}"
    if _stored_choice(run_dir) == "none":
        return "the run was trained with trainer.checkpoints=none, which writes no checkpoint to resume from."
    return ("there is no checkpoints/last.pt: the run stopped before its first epoch ended, so there is nothing to "
            f"resume; start it again.{_leftovers(run_dir)}")


def _leftovers(run_dir: Path) -> str:
    """What the half-written files a killed run left hold, and how they go (nothing is removed from a folder that
    is refused)."""
    found = sorted(path for pattern in LEFTOVERS for path in run_dir.glob(pattern) if path.is_file())
    if not found:
        return ""
    size = sum(path.stat().st_size for path in found) / 1e6
    names = ", ".join(path.relative_to(run_dir).as_posix() for path in found)
    return (f" It left half-written files ({names}: {size:.0f} MB), which hold nothing to keep: a new run with "
            f"run_dir={run_dir} replaces them, or delete the folder.")


def _stored_choice(run_dir: Path) -> str | None:
    try:
        stored = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        return checkpoint_choice(stored["trainer"]["checkpoints"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None

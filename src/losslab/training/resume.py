"""Resuming a run in its own folder: its config comes from its checkpoint, and the command line may change only
how long and where it trains (and what it keeps)."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from losslab.config.run_config import with_current_keys
from losslab.config.validation import checkpoint_choice, loss_sections, validate
from losslab.errors import LosslabError
from losslab.modeling.weights import read_checkpoint
from losslab.run_lock import RUN_FILES, claim, release, resumable
from losslab.training.checkpoints import RESUME_KEYS
from losslab.training.run_folder import remove_leftovers

log = logging.getLogger(__name__)

# What a resumed run may change: how long it trains and where, what it keeps, never what it trains.
RESUMABLE_KEYS = ("trainer.max_epochs", "trainer.progress", "trainer.device", "data.num_workers", "trainer.on_extend",
                  "trainer.checkpoints", "trainer.keep_resume_state")


def open_checkpoint(run_dir: Path, own: bool = True) -> dict:
    """The resume state of the run in `run_dir` (checkpoints/last.pt), or a LosslabError saying why the folder
    cannot be resumed; with `own` (the main process) this process becomes the folder's owner first. Nothing is
    written into a folder that is refused."""
    if not resumable(run_dir):
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
            "resume; start it again.")


def _stored_choice(run_dir: Path) -> str | None:
    try:
        stored = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        return checkpoint_choice(stored["trainer"]["checkpoints"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None


def resumed_config(checkpoint: dict, overrides: list[str], run_dir: Path) -> DictConfig:
    """The run's own config from its checkpoint, with the allowed command-line overrides applied.

    Model, eval and trainer keys added to losslab since the run was trained take their current defaults. Only what
    validation allows is ever imported from it (the optimizer and scheduler classes of torch.optim,
    torch.optim.lr_scheduler and lion_pytorch; a user loss it names is logged as imported).
    """
    cfg = with_current_keys(OmegaConf.create(checkpoint["config"]))
    changes = [o for o in overrides if not o.startswith(("resume=", "hydra.", "hydra/"))]
    refused = [o for o in changes if o.split("=", 1)[0].lstrip("+~") not in RESUMABLE_KEYS]
    if refused:
        raise LosslabError(f"resume={run_dir} continues that run with its own config; {', '.join(refused)} would "
                           f"change what it trains. Only {', '.join(RESUMABLE_KEYS)} may be given when resuming; "
                           "start a new run for other changes.")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(changes))
    cfg.resume = str(run_dir)
    validate(cfg)
    # What a stored config names is imported only here: the user's own command asked to continue this run.
    for where, choice in loss_sections(OmegaConf.to_container(cfg.loss, resolve=True)):
        if choice.get("name") == "custom":
            log.info("resume=%s: importing the user loss %s._target_=%s that the run's stored config names, because "
                     "you asked to resume that run", run_dir, where, choice["_target_"])
    if checkpoint["epoch"] >= cfg.trainer.max_epochs:
        raise LosslabError(f"the run in {run_dir} already finished epoch {checkpoint['epoch']} of "
                           f"trainer.max_epochs={cfg.trainer.max_epochs}; to train longer, resume with a larger "
                           "trainer.max_epochs.")
    return cfg

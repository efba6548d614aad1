"""Resuming a run in its own folder: its config comes from its checkpoint, and the command line may change only
how long and where it trains."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from losslab.config.run_config import with_current_keys
from losslab.config.validation import loss_sections, validate
from losslab.errors import LosslabError
from losslab.modeling.weights import read_checkpoint

log = logging.getLogger(__name__)

# What a resumed run may change: how long it trains and where, never what it trains.
RESUMABLE_KEYS = ("trainer.max_epochs", "trainer.progress", "trainer.device", "data.num_workers")


def open_checkpoint(run_dir: Path) -> dict:
    """The last checkpoint of the run in `run_dir`, or a LosslabError saying why there is none."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        raise LosslabError(f"resume={run_dir}: there is no checkpoints/last.pt in that folder; expected the "
                           "folder of a losslab run that finished at least one epoch (outputs/DATE/TIME).")
    return read_checkpoint(path)


def resumed_config(checkpoint: dict, overrides: list[str], run_dir: Path) -> DictConfig:
    """The run's own config from its checkpoint (with the model keys added since, at their defaults), with the
    allowed command-line overrides applied."""
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

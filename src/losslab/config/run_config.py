"""A run's own config read back: from its folder (a finished run, for inference) or its checkpoint (a resumed run,
with the overrides a resume may make)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from losslab.config.compose import config_dir, trainer_defaults
from losslab.config.plan import Plan
from losslab.config.validation import loss_sections, validate
from losslab.errors import LosslabError

log = logging.getLogger(__name__)

# What a resumed run may change: how long it trains and where, what it keeps, never what it trains.
RESUMABLE_KEYS = ("trainer.max_epochs", "trainer.progress", "trainer.device", "data.num_workers", "trainer.on_extend",
                  "trainer.checkpoints", "trainer.keep_resume_state")


def read_run_config(run_dir: Path) -> dict:
    """RUN_DIR/.hydra/config.yaml resolved to plain values, with the model and eval keys added to losslab since
    the run was trained set to their current defaults (so older runs keep loading)."""
    config_path = Path(run_dir) / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise LosslabError(f"{config_path} does not exist; expected a losslab run folder (outputs/DATE/TIME) "
                           f"holding .hydra/config.yaml and checkpoints/.")
    return OmegaConf.to_container(with_current_keys(OmegaConf.load(config_path)), resolve=True)


def with_current_keys(cfg: DictConfig) -> DictConfig:
    """A stored run config with the model, eval and trainer keys added to losslab since it was written
    (model.weights, eval.backend, trainer.checkpoints, ...) set to their defaults (the model's: those of its model
    option), so that older runs keep loading and resuming."""
    cfg.model = OmegaConf.merge(model_defaults(cfg.get("model", {}).get("arch", "faster_rcnn")), cfg.model)
    cfg.eval = OmegaConf.merge(OmegaConf.load(config_dir() / "train.yaml").eval, cfg.get("eval", {}))
    cfg.trainer = OmegaConf.merge(trainer_defaults(), cfg.get("trainer", {}))
    return cfg


def model_defaults(arch: str) -> dict:
    """The keys of conf/model/<arch>.yaml over those of the model options it starts from (faster_rcnn.yaml for the
    detectors, deeplabv3.yaml for the segmenters).

    Read as files rather than composed: inside `train` (resuming a run) Hydra is initialised and cannot compose
    a second config.
    """
    node = OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / f"{arch}.yaml"))
    parents = [entry for entry in node.pop("defaults", []) if isinstance(entry, str) and entry != "_self_"
               and not entry.startswith("/")]  # the model options it starts from (mask_rcnn: faster_rcnn)
    return OmegaConf.to_container(OmegaConf.merge(*(model_defaults(parent) for parent in parents), node))


def resumed_plan(checkpoint: dict, overrides: list[str], run_dir: Path, ended: bool = True) -> Plan:
    """The plan of a resumed run: its own config from its checkpoint, with the allowed command-line overrides
    applied, validated. A run that trained its last epoch but never `ended` (killed before its summary) is
    finished by its resume, without training.

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
    plan = validate(cfg)
    # What a stored config names is imported only here: the user's own command asked to continue this run.
    for where, choice in loss_sections(OmegaConf.to_container(cfg.loss, resolve=True)):
        if choice.get("name") == "custom":
            log.info("resume=%s: importing the user loss %s._target_=%s that the run's stored config names, because "
                     "you asked to resume that run", run_dir, where, choice["_target_"])
    epoch, max_epochs = checkpoint["epoch"], cfg.trainer.max_epochs
    if epoch > max_epochs or (epoch == max_epochs and ended):
        raise LosslabError(f"the run in {run_dir} already finished epoch {checkpoint['epoch']} of "
                           f"trainer.max_epochs={cfg.trainer.max_epochs}; to train longer, resume with a larger "
                           "trainer.max_epochs.")
    return plan

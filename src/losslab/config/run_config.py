"""A finished run's own config, read back from its folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from losslab.config.compose import config_dir, trainer_defaults
from losslab.errors import LosslabError


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

"""A finished run's own config, read back from its folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from losslab.config.compose import compose_config
from losslab.errors import LosslabError


def read_run_config(run_dir: Path) -> dict:
    """RUN_DIR/.hydra/config.yaml resolved to plain values, with the model keys added to losslab since the run
    was trained set to the defaults of its model option (so older runs keep loading)."""
    config_path = Path(run_dir) / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise LosslabError(f"{config_path} does not exist; expected a losslab run folder (outputs/DATE/TIME) "
                           f"holding .hydra/config.yaml and checkpoints/.")
    return OmegaConf.to_container(with_current_model_keys(OmegaConf.load(config_path)), resolve=True)


def with_current_model_keys(cfg: DictConfig) -> DictConfig:
    """A stored run config with the model keys added to losslab since it was written (model.weights,
    model.variant, ...) set to the defaults of its model option, so that older runs keep loading and resuming."""
    arch = cfg.get("model", {}).get("arch", "faster_rcnn")
    current = compose_config([f"model={arch}"]).model
    cfg.model = OmegaConf.merge(OmegaConf.to_container(current), cfg.model)
    return cfg

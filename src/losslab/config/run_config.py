"""A finished run's own config, read back from its folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from losslab.config.compose import compose_config
from losslab.errors import LosslabError


def read_run_config(run_dir: Path) -> dict:
    """RUN_DIR/.hydra/config.yaml resolved to plain values, with the model keys added to losslab since the run
    was trained set to the defaults of its model option (so older runs keep loading)."""
    config_path = Path(run_dir) / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise LosslabError(f"{config_path} does not exist; expected a losslab run folder (outputs/DATE/TIME) "
                           f"holding .hydra/config.yaml and checkpoints/.")
    cfg = OmegaConf.load(config_path)
    arch = cfg.get("model", {}).get("arch", "faster_rcnn")
    current = compose_config([f"model={arch}"]).model
    cfg.model = OmegaConf.merge(OmegaConf.to_container(current), cfg.model)
    return OmegaConf.to_container(cfg, resolve=True)

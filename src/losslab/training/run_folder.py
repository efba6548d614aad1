"""The run folder: where a run writes, and the refusal to write into a folder that already holds a run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from losslab.errors import LosslabError


def resolve_run_dir(cfg: DictConfig) -> Path:
    """cfg.run_dir if set, else Hydra's output folder, else a new outputs/DATE/TIME."""
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    if HydraConfig.initialized():  # a config composed by the compose API has no output folder: "???"
        output_dir = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None)
        if output_dir:
            return Path(output_dir)
    return Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")


def prepare_run_dir(run_dir: Path, cfg: DictConfig) -> None:
    """Refuse a folder that already holds a run; give the Python API's runs the config file Hydra writes."""
    if (run_dir / "metrics.csv").exists():
        raise LosslabError(f"run folder {run_dir} already holds a run (metrics.csv); choose another run_dir "
                           "so nothing is overwritten.")
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.exists():  # Hydra writes it for `train`; the Python API writes it here
        OmegaConf.save(cfg, config_file)

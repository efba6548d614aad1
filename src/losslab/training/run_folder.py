"""The run folder: where a run writes, made this process's own (its lock) before anything is written there, and
refused when it already holds a run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from losslab.config.compose import is_scratch
from losslab.errors import LosslabError
from losslab.run_lock import RUN_FILES, claim, holds_run, release, resumable

# Half-written files a killed run leaves (every file is written to one of these, then renamed over its name).
LEFTOVERS = ("*.tmp", "*.tmp.png", "checkpoints/*.tmp")


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
    """Make `run_dir` this process's own for a new run and give the Python API's runs the config file Hydra writes.

    Refuses (a LosslabError, nothing written) a folder that holds another run or that another process owns.
    """
    if is_scratch(run_dir):  # `train`'s resolver found no free outputs/DATE/TIME_N (see config/compose.py)
        raise LosslabError("no free run folder under outputs/ for this second; choose one with run_dir=DIR.")
    claim(run_dir)
    if holds_run(run_dir):
        release(run_dir)
        there = ", ".join(name for name in RUN_FILES if (run_dir / name).exists())
        resume = f", or continue that run with resume={run_dir}" if resumable(run_dir) else ""
        raise LosslabError(f"run folder {run_dir} already holds a run ({there}); choose another run_dir so nothing "
                           f"is overwritten{resume}.")
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.exists():  # Hydra writes it for `train`; the Python API writes it here
        config_file.parent.mkdir(exist_ok=True)
        OmegaConf.save(cfg, config_file)


def remove_leftovers(run_dir: Path) -> None:
    """Remove the half-written files a killed run left (the whole files they were to replace are still there)."""
    for pattern in LEFTOVERS:
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)

"""Where the configs are, `register()` (the schemas and resolvers Hydra needs, called explicitly by whoever
composes) and `compose_config` (the config `train` would run with)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_registered = False


def config_dir() -> Path:
    """The folder holding train.yaml: inside the package for a wheel, ./conf for a checkout."""
    packaged = Path(__file__).parents[1] / "conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "conf"


def register() -> None:
    """Store the schemas and generated options in Hydra's ConfigStore and register losslab's resolvers (once)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    from losslab.config.schema import SCHEMAS

    store = ConfigStore.instance()
    for path, node in SCHEMAS.items():
        group, _, name = path.rpartition("/")
        store.store(group=group, name=name, node=node)
    OmegaConf.register_new_resolver("losslab_run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("losslab_hydra_subdir", hydra_subdir, replace=True)
    _registered = True


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The config `train` would run with these command-line overrides (Hydra's compose API)."""
    from hydra import compose, initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides or []))


# Hydra's run folder is the first of resume, run_dir and outputs/DATE/TIME that is set, and a resumed
# run keeps its own .hydra/ files: the resolvers train.yaml uses for that.
def _resumable(resume: str | None) -> bool:
    return bool(resume) and Path(resume).is_dir()  # a wrong path must not create a folder


def run_dir(resume: str | None, chosen: str | None, new: str) -> str:
    rank = int(os.environ.get("RANK", 0))
    if rank > 0:
        # Under torchrun only rank 0 writes the run folder (the others learn its path from rank 0);
        # the other processes' Hydra files (their config copy and log) go to a scratch folder.
        return str(Path(tempfile.gettempdir()) / f"losslab-rank{rank}-{os.getpid()}")
    return resume if _resumable(resume) else chosen or new


def hydra_subdir(resume: str | None) -> str:
    return ".hydra/resume" if _resumable(resume) else ".hydra"

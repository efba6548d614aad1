"""Where the configs are, `register()` (the schemas and resolvers Hydra needs, called explicitly by whoever
composes) and `compose_config` (the config `train` would run with)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_registered = False
SCRATCH_PREFIX = "losslab-"


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
    _registered = True


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The config `train` would run with these command-line overrides (Hydra's compose API)."""
    from hydra import compose, initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides or []))


def trainer_defaults() -> DictConfig:
    """The values of the trainer option (conf/trainer/default.yaml), for configs stored before a key existed."""
    values = OmegaConf.load(config_dir() / "trainer" / "default.yaml")
    values.pop("defaults", None)
    return values


# Hydra's run folder (hydra.run.dir) is where Hydra would write; losslab's Hydra config has it write nothing there
# (no .hydra/, no log file: the run writes them once it owns its folder, see losslab.training.run_folder). Hydra
# still creates the folder before the run starts, so this resolver only chooses a path that creating leaves as it
# was: the folder of resume= or run_dir= when it already exists, else a scratch folder of this process's own. The
# run takes the folder it is given (or a new outputs/DATE/TIME) itself, with its lock, after its config checks;
# under torchrun only rank 0 does, and tells the others.
def run_dir(resume: str | None, chosen: str | None) -> str:
    folder = resume or chosen
    return folder if folder and Path(folder).is_dir() else str(scratch_dir("new"))


def scratch_dir(kind: str) -> Path:
    """A folder of this process's own for Hydra to create instead of a run folder (removed when the job ends)."""
    return Path(tempfile.gettempdir()) / f"{SCRATCH_PREFIX}{kind}-{os.getpid()}"


def is_scratch(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith(SCRATCH_PREFIX)

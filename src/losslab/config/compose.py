"""Where the configs are, `register()` (the schemas and resolvers Hydra needs, called explicitly by whoever
composes) and `compose_config` (the config `train` would run with)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from losslab.errors import LosslabError
from losslab.run_lock import claim, holds_run, owned, release, resumable

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
    OmegaConf.register_new_resolver("losslab_hydra_subdir", hydra_subdir, replace=True)
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


# Hydra's run folder is the first of resume, run_dir and outputs/DATE/TIME that is set, and a resumed run keeps its
# own .hydra/ files: the resolvers train.yaml uses for that. Hydra writes .hydra/ and train.log into the folder
# before the run starts, so the folder is claimed here (its lock taken) and only when a run may write there: a
# folder that holds another run, is locked by another process, cannot be written or (for resume) is no resumable
# run gets nothing; Hydra writes into a scratch folder instead and the run then refuses with the reason.
def run_dir(resume: str | None, chosen: str | None, new: str) -> str:
    rank = int(os.environ.get("RANK", 0))
    if rank > 0:
        # Under torchrun only rank 0 writes the run folder (the others learn its path from rank 0);
        # the other processes' Hydra files (their config copy and log) go to a scratch folder.
        return str(scratch_dir(f"rank{rank}"))
    if resume:
        return resume if _take(Path(resume), resuming=True) else str(scratch_dir("refused"))
    if chosen:
        return chosen if _take(Path(chosen)) else str(scratch_dir("refused"))
    # Runs started in the same second share outputs/DATE/TIME: later ones get TIME_1, TIME_2, ...
    for candidate in (new, *(f"{new}_{n}" for n in range(1, 100))):
        if _take(Path(candidate)):
            return candidate
    return str(scratch_dir("refused"))


def _take(folder: Path, resuming: bool = False) -> bool:
    """Claim `folder` for this process if a new run (or, `resuming`, a resume) may write there."""
    if resuming and not resumable(folder):  # checked before claiming: claiming would create the folder
        return False
    try:
        claim(folder)
    except LosslabError:
        return False
    if not resuming and holds_run(folder):  # checked once it is ours, so no run can start there in between
        release(folder)
        return False
    return True


def hydra_subdir(resume: str | None) -> str:
    return ".hydra/resume" if resume and owned(Path(resume)) else ".hydra"


def scratch_dir(kind: str) -> Path:
    """A folder of this process's own for Hydra's files that belong in no run folder (removed when the run ends)."""
    return Path(tempfile.gettempdir()) / f"{SCRATCH_PREFIX}{kind}-{os.getpid()}"


def is_scratch(folder: str | Path) -> bool:
    folder = Path(folder)
    return folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith(SCRATCH_PREFIX)

"""The run folder: chosen and made this process's own (its lock) by the run itself, after its config checks and
before anything is written there; refused when it holds another run."""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

from losslab.config.plan import Plan
from losslab.distributed import World, broadcast
from losslab.errors import LosslabError
from losslab.run_lock import RUN_FILES, claim, holds_run, release, resumable
from losslab.training.hydra_job import HydraJob

log = logging.getLogger(__name__)

# Half-written files a killed run leaves (every file is written to one of these, then renamed over its name).
LEFTOVERS = ("*.tmp", "*.tmp.png", "checkpoints/*.tmp")
# What a run that never finished an epoch leaves (refused data, killed in epoch 1): replaced by the next run there.
UNFINISHED = ("summary.json", "metrics.csv", "split.json", "data_audit.json", "data_audit.png", "loss_curves.png",
              "train.log", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")
NEW_FOLDERS = 100  # runs started in the same second share outputs/DATE/TIME: later ones get TIME_1, TIME_2, ...


def take_run_dir(plan: Plan, job: HydraJob | None, world: World) -> Path:
    """The folder of a new run, owned by the main process from here on, with the run's config (and `job`'s Hydra
    files and train.log) in it: run_dir=, else the job's named folder (hydra.run.dir=, a sweep's job folder), else a
    new outputs/DATE/TIME. Every process gets its path, or the main process's refusal as a LosslabError."""
    path, refusal = None, None
    if world.main:
        try:
            path = str(_take(plan, job))
        except LosslabError as refused:
            refusal = str(refused)
    path, refusal = broadcast((path, refusal))
    if refusal is not None:
        raise LosslabError(refusal)
    return Path(path)


def _take(plan: Plan, job: HydraJob | None) -> Path:
    named = job.output_dir if job is not None and job.named else None
    if plan.sections.get("run_dir"):
        named = Path(plan.sections["run_dir"])
    run_dir = _new_folder() if named is None else _own(named)
    try:
        clear_unfinished(run_dir)
        if job is not None:
            job.settle(run_dir, resumed=False)
        else:  # the Python API's run: the config file `train` writes from Hydra's
            (run_dir / ".hydra").mkdir(exist_ok=True)
            (run_dir / ".hydra" / "config.yaml").write_text(plan.composed)
    except OSError as error:
        release(run_dir)
        raise LosslabError(f"run folder {run_dir} cannot be written ({error.strerror or error}); choose a writable "
                           "run_dir.") from error
    return run_dir


def _own(folder: Path) -> Path:
    """Make `folder` this process's own, or refuse it (nothing written) when it holds another run."""
    claim(folder)
    if holds_run(folder):  # checked once it is ours, so no run can start there in between
        release(folder)
        there = ", ".join(name for name in RUN_FILES if (folder / name).exists())
        resume = f", or continue that run with resume={folder}" if resumable(folder) else ""
        raise LosslabError(f"run folder {folder} already holds a run ({there}); choose another run_dir so nothing "
                           f"is overwritten{resume}.")
    foreign = [name for name in UNFINISHED if (folder / name).is_file()]
    foreign += [str(path.relative_to(folder)) for pattern in LEFTOVERS for path in folder.glob(pattern)]
    if foreign and not (folder / ".hydra" / "config.yaml").is_file():  # no losslab run wrote them: keep them
        release(folder)
        raise LosslabError(f"run folder {folder} holds files of the names a run writes ({', '.join(foreign)}) that no "
                           "losslab run left there (it has no .hydra/config.yaml); choose an empty or new run_dir so "
                           "nothing is overwritten.")
    return folder


def _new_folder() -> Path:
    """A new outputs/DATE/TIME (TIME_N when runs started in the same second took the first ones), this process's."""
    base = Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    parent = next(folder for folder in base.absolute().parents if folder.exists())
    if not os.access(parent, os.W_OK):
        where = f"the working folder {parent}" if parent == Path.cwd() else f"{parent}"
        raise LosslabError(f"{where} is read-only, and train makes each new run's folder ({base}) there; choose a "
                           "writable run folder with run_dir=DIR (or start train in a writable folder).")
    for candidate in (base, *(base.with_name(f"{base.name}_{n}") for n in range(1, NEW_FOLDERS))):
        try:
            return _own(candidate)
        except LosslabError:
            continue  # another run of this second owns it, or its run is done
    raise LosslabError(f"no free run folder under {base.parent} for this second ({NEW_FOLDERS} runs started in it); "
                       "choose one with run_dir=DIR.")


def clear_unfinished(run_dir: Path) -> None:
    """Remove what an earlier run in `run_dir` left that never finished an epoch (no checkpoint, no metrics row):
    its summary, split, log and Hydra files, and any half-written file. The folder is this run's now; `_own` has
    refused a folder whose such files no losslab run wrote."""
    found = [name for name in UNFINISHED if (run_dir / name).is_file()]
    for name in found:
        (run_dir / name).unlink()
    remove_leftovers(run_dir)
    if found:
        log.info("run folder %s held a run that never finished an epoch; its %s are replaced by this run's",
                 run_dir, ", ".join(found))


def remove_leftovers(run_dir: Path) -> None:
    """Remove the half-written files a killed run left (the whole files they were to replace are still there)."""
    for pattern in LEFTOVERS:
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)

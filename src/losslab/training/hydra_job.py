"""What `train` (the Hydra app) hands its run: Hydra's files (.hydra/config.yaml, hydra.yaml, overrides.yaml) and
train.log, written into the run folder only once the run owns it.

Hydra itself writes nothing into a run folder (conf/train.yaml: `output_subdir: null`, and its job logging has no
file handler): it would write before the run has checked its config or taken the folder's lock, so a refused run
would leave files behind, or overwrite those of the run already in that folder.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, read_write

from losslab.errors import LosslabError
from losslab.run_lock import claim, holds_run, release

DEFAULT_RUN_DIR = "${losslab_run_dir:"  # how conf/train.yaml's hydra.run.dir begins: no folder named by the user
# train.log's line format where the job's logging config names none (conf/hydra/job_logging/losslab.yaml does)
DEFAULT_FORMAT = "[%(asctime)s][%(levelname)s] %(message)s"
RESUMED = ".hydra/resume"  # a resumed run's own Hydra files: its folder's .hydra/ stays the run's first


class RunLog(logging.Handler):
    """train.log: every record of the job from its start, held in memory until the run owns its folder (a run
    refused before then writes none)."""

    def __init__(self, line_format: str):
        super().__init__()
        self.setFormatter(logging.Formatter(line_format))
        self.pending: list[str] = []
        self.file = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self.file is None:
                self.pending.append(line)
            else:
                self.file.write(line)
                self.file.flush()
        except Exception:  # noqa: BLE001 (logging's own contract: report, never raise)
            self.handleError(record)

    def open(self, path: Path, mode: str) -> None:
        """Write the records so far to `path` and every later one as it comes."""
        with self.lock:
            self.file = path.open(mode, encoding="utf-8")
            self.file.writelines(self.pending)
            self.file.flush()
            self.pending.clear()

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.close()
            self.pending.clear()
        super().close()


@dataclass
class HydraJob:
    """One job of `train` (a run, or one job of a sweep) as Hydra started it."""

    config: DictConfig  # the job's config as Hydra composed it: .hydra/config.yaml
    hydra: DictConfig  # Hydra's own config (`hydra:` at its root): .hydra/hydra.yaml
    output_dir: Path  # the folder Hydra made for the job (a scratch folder when the run chooses its own)
    named: bool  # the job's folder is named (hydra.run.dir=, a sweep's job folder), not a new outputs/DATE/TIME
    multirun: bool
    log: RunLog
    run_dir: Path | None = field(default=None)  # the folder the run took, once it has

    def settle(self, run_dir: Path, resumed: bool) -> None:
        """Write Hydra's files into `run_dir`, which this process owns (a resumed run's into .hydra/resume, its log
        appended), and start train.log there."""
        hydra = copy.deepcopy(self.hydra)
        with read_write(hydra.hydra.runtime):  # Hydra's output folder may have been a scratch one
            hydra.hydra.runtime.output_dir = str(run_dir.resolve())
        folder = run_dir / (RESUMED if resumed else ".hydra")
        folder.mkdir(parents=True, exist_ok=True)
        for name, node in (("config.yaml", self.config), ("hydra.yaml", hydra),
                           ("overrides.yaml", self.hydra.hydra.overrides.task)):
            (folder / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
        self.log.open(run_dir / "train.log", "a" if resumed else "w")
        self.run_dir = run_dir

    def close(self) -> None:
        """End train.log and give the run folder up. A sweep's job refused before its run took a folder still
        leaves its overrides and log (with the error) in its own job folder when that folder is free: the sweep's
        summary lists it with its reason."""
        logging.getLogger().removeHandler(self.log)
        if self.run_dir is None and self.multirun:
            self._record_refusal()
        self.log.close()
        if self.run_dir is not None:
            release(self.run_dir)

    def _record_refusal(self) -> None:
        try:
            claim(self.output_dir)
        except LosslabError:
            return  # another process owns it: nothing of this job goes there
        if holds_run(self.output_dir):
            release(self.output_dir)
            return
        self.settle(self.output_dir, resumed=False)


def start_job(config: DictConfig) -> HydraJob:
    """The job Hydra is running with `config`; its records are kept for train.log from here on."""
    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    raw_dir = OmegaConf.to_container(hydra.run, resolve=False)["dir"]
    log = RunLog(OmegaConf.select(hydra.job_logging, "formatters.simple.format", default=DEFAULT_FORMAT))
    logging.getLogger().addHandler(log)
    return HydraJob(config=copy.deepcopy(config), hydra=copy.deepcopy(HydraConfig.instance().cfg),
                    output_dir=Path(hydra.runtime.output_dir),
                    named=multirun or not str(raw_dir).startswith(DEFAULT_RUN_DIR), multirun=multirun, log=log)

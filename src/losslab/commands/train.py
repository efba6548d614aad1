"""`train [overrides]` (also `losslab train`, `python -m losslab`): the Hydra app around `run`, and the callback
that summarises a sweep when it ends."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from losslab.config.compose import config_dir, is_scratch, register
from losslab.distributed import launched_world
from losslab.errors import LosslabError
from losslab.run_lock import release_all

log = logging.getLogger("losslab")

# Hydra composes in this process and, with a launcher, in worker processes that import this module to run
# the task function: both need the schemas and resolvers before composing.
register()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _train_app(cfg: DictConfig) -> float | None:
    """One training run; returns the best monitored value (what Hydra sweepers optimise).

    In a multirun a failing job is logged and recorded (summary.json says failed) but does not
    stop the sweep; a single run exits non-zero.
    """
    from losslab.distributed import shutdown
    from losslab.training.run import run

    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode == RunMode.MULTIRUN
    world = launched_world()
    if world.rank > 0:  # under torchrun the main process reports; the others only warn
        logging.getLogger().setLevel(logging.WARNING)
    try:
        result = run(cfg, overrides=list(hydra_config.overrides.task))
    except LosslabError as error:
        log.error("%s", error)
        if multirun:
            return None
        sys.exit(1)
    except Exception:
        if not multirun:
            raise
        log.exception("this job failed; the sweep goes on")
        return None
    finally:
        release_all()  # run() gives its folder up; this covers a run that stopped before it could
        if world.distributed:
            shutdown()
        # Hydra's files went to a scratch folder: this is another rank than the main one, or the run folder
        # was refused before Hydra could write into it (see losslab_run_dir in losslab.config.compose).
        if is_scratch(hydra_config.runtime.output_dir):
            shutil.rmtree(hydra_config.runtime.output_dir, ignore_errors=True)
    return result.summary["best"].get(cfg.trainer.monitor)


def _terminated(signum: int, frame) -> None:
    raise KeyboardInterrupt("SIGTERM")  # like Ctrl-C: the run records where it stopped (cluster time limits, kill)


def main() -> None:
    """`train [overrides]`: see `train --help` for the config groups."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        _train_app()
    except KeyboardInterrupt as stop:
        # run() has already written summary.json (status interrupted) and the last checkpoint.
        log.warning("interrupted")
        sys.exit(128 + signal.SIGTERM if str(stop) == "SIGTERM" else 130)


class SweepSummaryCallback(Callback):
    """Writes sweep_summary.csv and sweep_curves.png into the sweep folder when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from losslab.reporting.sweep import summarize_sweep

        sweep_dir = Path(config.hydra.sweep.dir)
        rank_by = config.sweep.rank_by
        rows = summarize_sweep(sweep_dir, rank_by, config.sweep.mode)
        for row in rows:
            log.info("#%d job %s [%s]: %s, best %s %s", row["rank"], row["job"], row["overrides"], row["status"],
                     rank_by, "n/a" if row["best"] is None else f"{row['best']:.4f}")
        log.info("sweep summary: %s, curves: %s", sweep_dir / "sweep_summary.csv", sweep_dir / "sweep_curves.png")

"""`train [overrides]` (also `losslab train`, `python -m losslab`): `run` (validate the config once into the run's
plan, take the run folder, train in it), the Hydra app around it, and the callback that summarises a sweep when it
ends."""

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
from losslab.errors import LosslabError
from losslab.run_lock import holds_run, release_all

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
    from losslab.distributed import launched_world, shutdown  # torch: imported only once a run starts
    from losslab.training.hydra_job import start_job

    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode == RunMode.MULTIRUN
    world = launched_world()
    if world.rank > 0:  # under torchrun the main process reports; the others only warn
        logging.getLogger().setLevel(logging.WARNING)
    job = start_job(cfg) if world.main else None  # its Hydra files and train.log, written once the run owns a folder
    try:
        result = run(cfg, overrides=list(hydra_config.overrides.task), job=job)
    except LosslabError as error:
        log.error("%s", error)
        if multirun:
            return None
        sys.exit(1)
    except Exception as failure:
        if not multirun:
            raise
        # One line naming the failure (sweep_summary.csv's error column reads it), then the traceback.
        log.exception("%s: %s (this job failed; the sweep goes on)", type(failure).__name__, failure)
        return None
    finally:
        if job is not None:
            job.close()  # after the error line above: train.log ends with it
        release_all()  # covers a run that stopped between taking its folder and handing it to the job
        if world.distributed:
            shutdown()
        # Hydra made a scratch folder where the run chooses its own (see losslab_run_dir in losslab.config.compose).
        if is_scratch(hydra_config.runtime.output_dir):
            shutil.rmtree(hydra_config.runtime.output_dir, ignore_errors=True)
    return result.summary["best"].get(result.summary["monitor"])  # the selection metric, auto resolved


def run(cfg: DictConfig, overrides: list[str] | None = None, job=None):
    """Train the configured model in its own folder (see losslab.training.run.train_in_folder); its RunResult.

    The config is validated once, into the run's plan, before anything is written. With `resume=RUN_DIR` the run in
    RUN_DIR continues from its checkpoints/last.pt with its own config; `overrides` (the command line's) may change
    only losslab.config.run_config.RESUMABLE_KEYS, e.g. to extend it.

    The run owns its folder (an exclusive lock, see losslab.run_lock) from before its first write to its end;
    nothing is written for a run refused before (its config, or a folder that holds another run). `job` is the
    `train` command's Hydra job (losslab.training.hydra_job): the run writes its Hydra files and train.log, and the
    job gives the folder up when it ends (after its last log line).
    """
    # torch and the training layers: imported once a run starts, so that `train --help` and completion stay fast
    from losslab.config.run_config import resumed_plan
    from losslab.config.validation import validate
    from losslab.distributed import init_world, launched_world
    from losslab.modeling.runtime import resolve_device
    from losslab.run_lock import ended, release
    from losslab.training.resume import open_checkpoint
    from losslab.training.run import train_in_folder
    from losslab.training.run_folder import take_run_dir

    world = init_world(resolve_device(cfg.trainer.device, launched_world()).type)
    if cfg.get("resume"):
        run_dir = Path(cfg.resume)
        checkpoint = open_checkpoint(run_dir, own=world.main)
        try:
            plan = resumed_plan(checkpoint, overrides or [], run_dir, ended=ended(run_dir))
            if world.main and job is not None:
                job.settle(run_dir, resumed=True)
        except BaseException:
            if world.main:
                release(run_dir)
            raise
    else:
        plan, checkpoint = validate(cfg), None
        run_dir = take_run_dir(plan, job, world)
    try:
        return train_in_folder(plan, run_dir, checkpoint, world)
    finally:
        if world.main and job is None:
            release(run_dir)


def _terminated(signum: int, frame) -> None:
    raise KeyboardInterrupt("SIGTERM")  # like Ctrl-C: the run records where it stopped (cluster time limits, kill)


def main() -> None:
    """`train [overrides]`: see `train --help` for the config groups."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        check_study_storage(sys.argv[1:])
    except LosslabError as error:
        log.error("%s", error)
        sys.exit(1)
    try:
        _train_app()
    except KeyboardInterrupt as stop:
        # run() has already written summary.json (status interrupted) and the last checkpoint.
        log.warning("interrupted")
        sys.exit(128 + signal.SIGTERM if str(stop) == "SIGTERM" else 130)


def check_study_storage(overrides: list[str]) -> None:
    """Refuse `hydra.sweeper.storage=URL` where it cannot work, before Optuna fails with a bare AssertionError.

    Hydra's Optuna sweeper supports Optuna 2.x only, and Optuna 2.x's database storage fails with SQLAlchemy 2
    (which MLflow, installed with losslab[dev], requires).
    """
    from importlib.metadata import PackageNotFoundError, version

    storage = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("hydra.sweeper.storage=")), None)
    if storage in (None, "", "null", "None"):
        return
    try:
        optuna, sqlalchemy = version("optuna"), version("sqlalchemy")
    except PackageNotFoundError:
        return  # Hydra reports a missing sweeper itself
    if int(optuna.split(".")[0]) < 3 and int(sqlalchemy.split(".")[0]) >= 2:
        raise LosslabError(
            f"hydra.sweeper.storage={storage}: Hydra's Optuna sweeper runs on Optuna {optuna}, whose database storage "
            f"does not work with SQLAlchemy {sqlalchemy} (installed here; MLflow needs it). Keep the study in memory "
            "(leave hydra.sweeper.storage out), or resume studies from an environment with "
            "pip install \"sqlalchemy<2\" \"alembic<1.14\" and without MLflow (docs/scale.md).")


def refuse_used_sweep_dir(sweep_dir: Path) -> None:
    """Exit (1) before the sweeper writes its multirun.yaml when `sweep_dir` holds the runs of another sweep: each
    job would be refused, and the summary rewritten over the other sweep's. (Hydra turns a callback's exception
    into a warning, so this exits.)"""
    done = sorted(job.name for job in sweep_dir.glob("*/") if holds_run(job)) if sweep_dir.is_dir() else []
    if done:
        log.error("sweep folder %s already holds the runs of a sweep (jobs %s); choose another hydra.sweep.dir so "
                  "nothing is overwritten.", sweep_dir, ", ".join(done))
        sys.exit(1)


class SweepSummaryCallback(Callback):
    """Ends a multirun with sweep_summary.csv and sweep_curves.png in the sweep folder, and with repeated seeds
    sweep_stats.csv and sweep_stats.png; logs the ranking, and the group table best first with its verdicts."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """Refuse a sweep folder that holds another sweep's runs; warn when an optimising sweeper searches loss
        settings by each trial's own loss."""
        from losslab.reporting.ranking import own_objective

        refuse_used_sweep_dir(Path(config.hydra.sweep.dir))
        sweeper = config.hydra.sweeper
        searched = [key for key in (sweeper.get("params") or {}) if key.lstrip("+~").startswith("loss")]
        # An optimising sweeper (Optuna's has a `direction`) optimises what every job returns: its trainer.monitor.
        if "direction" in sweeper and searched and own_objective(config.trainer.monitor):
            log.warning("the search varies %s but optimises trainer.monitor=%s, each trial's own loss, whose values "
                        "are on different scales across losses; set trainer.monitor=val/mAP (with eval.every=1) or "
                        "val/ref_loss", ", ".join(searched), config.trainer.monitor)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        """Summarise the sweep; when no job completed, say how many failed and exit 1 (as a failed run does)."""
        from losslab.reporting.sweep import summarize_sweep

        sweep_dir = Path(config.hydra.sweep.dir)
        options = config.sweep
        report = summarize_sweep(sweep_dir, options.rank_by, options.mode, options.repeat_key)
        metric = report.ranking.metric
        log.info("ranked by %s at each job's kept epoch: %s", metric, report.ranking.reason)
        if report.note:
            log.warning("%s", report.note)
        for row in report.jobs:
            log.info("#%d job %s [%s]: %s, %s %s at epoch %s (%s)", row["rank"], row["job"], row["overrides"],
                     row["status"], metric, "n/a" if row["value"] is None else f"{row['value']:.4f}",
                     row["kept_epoch"] or "-", row["checkpoint"])
        log.info("sweep summary: %s, curves: %s", sweep_dir / "sweep_summary.csv", sweep_dir / "sweep_curves.png")
        if report.repeated:
            log_repeats(sweep_dir, report, options)
        failed = [row for row in report.jobs if row["status"] in UNFINISHED]
        if failed and len(failed) == len(report.jobs):
            log.error("the sweep failed: all %d of its jobs failed (their errors are above and in each job's "
                      "train.log)", len(failed))
            sys.exit(1)
        if failed:
            log.warning("%d of the sweep's %d jobs failed", len(failed), len(report.jobs))


# Statuses of a sweep's job that did not end by itself: it failed, was interrupted, or never wrote summary.json.
UNFINISHED = ("failed", "interrupted")


def log_repeats(sweep_dir: Path, report, options: DictConfig) -> None:
    """sweep_stats.csv and .png for a sweep with repeated seeds; the group table best first, with its verdicts."""
    from losslab.reporting.repeats import format_statistics
    from losslab.reporting.sweep import summarize_repeats

    try:
        groups = summarize_repeats(sweep_dir, report, options.baseline)
    except LosslabError as error:
        log.error("no sweep_stats.csv: %s", error)
        return
    log.info("jobs differing only in %s, grouped: %s of each job at its kept epoch, mean and 95%% interval per "
             "group, each against the baseline (better or worse: p < 0.05)\n%s", options.repeat_key,
             report.ranking.metric, format_statistics(groups))
    log.info("statistics: %s, figure: %s", sweep_dir / "sweep_stats.csv", sweep_dir / "sweep_stats.png")

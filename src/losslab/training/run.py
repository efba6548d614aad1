"""One training run from its plan, in the folder it owns: set up, the epochs (each one's files written as it ends),
the finish (checkpoints reduced to what the run keeps, summary.json, the closing report)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from losslab.config.plan import Plan, kept
from losslab.distributed import World, broadcast
from losslab.errors import LosslabError
from losslab.losses.catalogue import COMPONENTS
from losslab.modeling.weights import read_checkpoint
from losslab.reporting.comparison import folder_size, loss_title, run_title
from losslab.reporting.history import History, write_json
from losslab.reporting.loggers import build_loggers
from losslab.run_lock import FINISHED, ended
from losslab.training.checkpoints import finish_checkpoints, repair_best, restore, resume_state
from losslab.training.epoch import enter_phase, epoch_line, run_epoch
from losslab.training.epoch_files import EpochFiles, RecordError, reason
from losslab.training.loop import NonFiniteLossError
from losslab.training.run_folder import remove_leftovers
from losslab.training.session import Session, setup
from losslab.training.stopping import EarlyStopping
from losslab.training.summary import measured_on, report, run_summary, stop_message

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run returns (`losslab.run`): the per-epoch rows of metrics.csv, the run folder and the final status."""

    history: list[dict]
    run_dir: Path
    status: str
    summary: dict = field(default_factory=dict)


def train_in_folder(plan: Plan, run_dir: Path, checkpoint: dict | None, world: World) -> RunResult:
    """Set up, train and finish the planned run in `run_dir`, which this process owns (continuing from
    `checkpoint` when it resumes): metrics.csv, loss_curves.png, split.json and checkpoints written as the epochs
    end, summary.json at the end. Returns the history and final status.

    A diverged run returns normally with status "diverged"; any other failure is re-raised after summary.json
    records it (status "failed" or "interrupted"). Under torchrun every process trains its share of each batch
    and only the first (rank 0) writes.
    """
    sections = plan.sections
    title, loss = run_title(sections), loss_title(sections["loss"])
    history = History(plan.monitor, plan.mode)
    files = EpochFiles(run_dir, plan.checkpoints, title) if world.main else None
    session: Session | None = None
    loggers: list = []
    status, error, failure, record_error = "completed", None, None, None
    started = time.monotonic()
    try:
        # Lines logged while a progress bar runs are printed above it.
        with logging_redirect_tqdm() if plan.progress and world.main else contextlib.nullcontext():
            if world.main:
                options = sections["logger"]
                loggers = build_loggers(list(options["backends"]), run_dir, sections,
                                        mlflow_uri=options["mlflow_tracking_uri"],
                                        experiment=options["mlflow_experiment"])
            session = setup(plan, run_dir, world, resumed=checkpoint)
            first_epoch = 1 if checkpoint is None else resume_session(plan, session, checkpoint, history, run_dir) + 1
            # A run killed before it ended may have decided to stop early (an ended one is extended on purpose).
            decided = checkpoint is not None and not ended(run_dir)
            if train_epochs(plan, session, history, files, loggers, first_epoch, decided):
                status = "stopped_early"
    except NonFiniteLossError as nonfinite:
        status, error = "diverged", str(nonfinite)
        log.error("diverged: %s", nonfinite)
    except RecordError as raised:  # finish_run_dir says which file, and what there is to resume
        record_error = raised
    except BaseException as raised:  # Ctrl-C and SIGTERM too: summary.json says what happened, then re-raise
        failure = raised
        status = "interrupted" if isinstance(raised, KeyboardInterrupt) else "failed"
        error = str(raised) if isinstance(raised, LosslabError) else repr(raised)
    if world.main:
        status, error = finish_run_dir(plan, run_dir, checkpoint, history, status, error, failure, record_error)
    summary = run_summary(history, status, error, time.monotonic() - started, loss,
                          session.device if session else None, list(session.data.classes) if session else None,
                          session.class_weights if session else None, session.start if session else None, run_dir,
                          measured_on(plan, len(session.loaders["val"].dataset) if session else None))
    summary["balanced_weights"] = session.balanced_weights if session else None  # loss.balance=initial's
    if world.main:
        write_summary(run_dir, summary, history, loggers, plan.keep_resume_state)
    if failure is not None:
        raise failure
    if status == "failed":  # a file of the run folder could not be written
        raise LosslabError(error)
    return RunResult(history=history.rows, run_dir=run_dir, status=status, summary=summary)


def resume_session(plan: Plan, session: Session, checkpoint: dict, history: History, run_dir: Path) -> int:
    """Restore `session` from `checkpoint`; the last finished epoch."""
    epoch = restore(session, checkpoint, history, plan.max_epochs, plan.on_extend)
    if session.world.main and "best" in kept(plan.checkpoints):
        repair_best(run_dir / "checkpoints", checkpoint, history.best)
    if epoch >= plan.max_epochs:
        log.info("epoch %d was the run's last (trainer.max_epochs=%d), but the run was stopped before it ended: "
                 "finishing it without training", epoch, plan.max_epochs)
    return epoch


def train_epochs(plan: Plan, session: Session, history: History, files: EpochFiles | None,
                 loggers: list, first_epoch: int, decided: bool = False) -> bool:
    """Train from `first_epoch` to trainer.max_epochs, writing every epoch's files as it ends; True if it stopped
    early. `decided`: the rows so far may already say to stop (a resumed run killed after deciding so), which is
    then obeyed before any training."""
    early = plan.early_stopping
    stopping = EarlyStopping(early.monitor, early.mode, early.patience, early.min_delta) if early else None
    if decided and stopping is not None and stopping.should_stop(history.rows):
        log.info("early stopping at epoch %d: %s", first_epoch - 1, stopping.reason(history.rows))
        return True
    for epoch in range(first_epoch, plan.max_epochs + 1):
        if begun := enter_phase(session, epoch):
            log.info(begun)
        # Every process decides (best epoch, early stopping, divergence) from the main process's row.
        row = broadcast(run_epoch(session, epoch, plan.seed, plan.progress and session.world.main))
        improved = history.add(row)
        line = epoch_line(row, plan.max_epochs, improved)
        if not math.isfinite(row["val/loss"]):  # logged, but last.pt keeps the last good epoch
            if files is not None:
                files.write(history.rows, history.best_epoch, False, line)
            raise NonFiniteLossError(epoch, {name: row[f"val/{name}"] for name in (*COMPONENTS, "loss")
                                             if f"val/{name}" in row})
        if files is not None:
            state = resume_state(session, history.rows, plan.composed) if files.save_last else None
            files.write(history.rows, history.best_epoch, improved, line, state)
        for logger in loggers:
            logger.log_epoch(row)
        if stopping is not None and stopping.should_stop(history.rows):
            log.info("early stopping at epoch %d: %s", epoch, stopping.reason(history.rows))
            return True
    return False


def finish_run_dir(plan: Plan, run_dir: Path, checkpoint: dict | None, history: History, status: str,
                   error: str | None, failure: BaseException | None, record_error: RecordError | None
                   ) -> tuple[str, str | None]:
    """Reduce a finished run's checkpoints to what it keeps; the final status and error. A file that could not be
    written (`record_error`) fails the run, naming the file, and a stop says what there is to resume."""
    if record_error is not None:
        return "failed", f"{record_error}; {stop_message(run_dir, history, 'the run stopped', files_failed=True)}"
    choice = plan.checkpoints
    if status in FINISHED and not plan.keep_resume_state and choice != "none":
        try:
            last = last_saved(run_dir, checkpoint) if "last" in kept(choice) else None
            finish_checkpoints(run_dir / "checkpoints", choice, last, history.best_epoch)
        except Exception as problem:  # the run's results stand; say what could not be reduced
            status, error = "failed", f"could not reduce the checkpoints of {run_dir} to trainer.checkpoints=" \
                                      f"{choice}: {problem}"
    if status == "interrupted":
        reason = f"stopped by {failure}" if str(failure) else "stopped by the user (Ctrl-C)"
        error = stop_message(run_dir, history, reason)
    return status, error


def last_saved(run_dir: Path, checkpoint: dict | None) -> dict | None:
    """The resume state last written (a diverged epoch trained on after it), or the one resumed from."""
    path = run_dir / "checkpoints" / "last.pt"
    return read_checkpoint(path) if path.is_file() else checkpoint


def write_summary(run_dir: Path, summary: dict, history: History, loggers: list, keep_resume_state: bool) -> None:
    """summary.json (with whether the run can be resumed and the folder's size), the loggers' last words and the
    console report: each as far as the folder lets it."""
    summary["resumable"] = (run_dir / "checkpoints" / "last.pt").is_file() and (
        summary["status"] not in FINISHED or keep_resume_state)
    summary["size_mb"] = round(folder_size(run_dir) / 1e6, 1)
    try:
        write_json(run_dir / "summary.json", summary)
    except OSError as error:
        log.error("could not write %s: %s", run_dir / "summary.json", reason(run_dir / "summary.json", error))
    remove_leftovers(run_dir)  # what a failed write left (a full disk): the folder is still this run's
    artifacts = [run_dir / name for name in ("loss_curves.png", "metrics.csv", "summary.json")]
    for logger in loggers:
        try:
            logger.log_images([run_dir / "loss_curves.png"], len(history.rows))
            logger.close(summary, artifacts)
        except Exception as error:  # the run is over: report, never mask how it ended
            log.error("logger %s could not finish: %s", type(logger).__name__, error)
    report(summary, run_dir)

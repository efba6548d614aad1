"""The files of every finished epoch, written by a background thread while the next epoch trains.

Per epoch, in this order, so that a run killed at any moment (even by kill -9) resumes with nothing lost or
repeated and never claims more than it kept:
1. checkpoints/last.pt (the resume state), then best.pt (the weights) when the epoch improved;
2. metrics.csv, every epoch so far;
3. the epoch's console line: it is logged only once the epoch's checkpoint is on disk;
4. loss_curves.png, unless a later epoch is already waiting when its turn comes (then only that one is drawn).
   While training goes on, a helper process draws it (losslab.reporting.curve_process: drawing in this process
   would slow training), into a staging file while 1-3 are written, renamed when they are; the curves of a run's
   only epoch are drawn here, once 1-3 are written (training is over: no helper is worth starting).
The training thread only copies the state to save into buffers that are reused every epoch (a memcpy of weights
and optimizer state), and waits only when the previous epoch's checkpoint is still being written. The background
thread runs at the lowest CPU priority, so that it takes the cores only when training leaves them idle.

A failed write (a full or read-only disk) is kept -- the first one, with its file -- and the thread goes on
writing what it can; the training thread raises it at the next epoch, or when it closes the recorder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from losslab.errors import LosslabError
from losslab.reporting.curve_process import CurveProcess
from losslab.reporting.history import write_metrics
from losslab.training.checkpoints import save_checkpoint, snapshot, weights_of

log = logging.getLogger("losslab.training.run")


@dataclass
class _Epoch:
    rows: list[dict]
    best_epoch: int | None
    improved: bool
    line: str | None  # logged once the files before it are written
    state: dict | None  # the resume state to save (the snapshot buffer), or None
    last: bool  # the run's last epoch: no training goes on after it
    number: int  # the how-manieth epoch recorded: only the latest one is drawn


def _yield_to_training() -> None:
    """Run this thread (and the helper process it starts, which inherits it) at the lowest CPU priority, so that
    writing checkpoints and drawing take the cores only when training leaves them idle: on 2 cores, a checkpoint's
    write competing at equal priority cost six training steps 0.3-1.1 s, at the lowest 0-0.5 s. torch.save drops
    the interpreter's lock while it writes the tensors, so the write itself does not hold the training thread up.
    Linux only (elsewhere a process's priority is not a thread's)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _shown(task: _Epoch) -> tuple:
    """What loss_curves.png shows when drawn for `task`: its epochs and best epoch."""
    return tuple(row["epoch"] for row in task.rows), task.best_epoch


class RecordError(LosslabError):
    """A file of the run folder could not be written."""

    def __init__(self, path: Path, error: BaseException):
        self.path, self.error = path, error
        super().__init__(f"could not write {path}: {_reason(path, error)}")


def _reason(path: Path, error: BaseException) -> str:
    """The operating system's reason (e.g. "Read-only file system"), also when torch.save hid it."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    probe = path.with_name(path.name + ".tmp")  # torch.save says only that its file "cannot be opened": ask why
    try:
        probe.touch()
    except OSError as found:
        return found.strerror or str(found)
    probe.unlink(missing_ok=True)
    return str(error) or type(error).__name__


class EpochRecorder:
    """Writes each epoch's files into `run_dir` in a background thread; `checkpoints` says which checkpoints are
    written while the run trains ("none": none at all, else last.pt always and best.pt for "best"/"both")."""

    def __init__(self, run_dir: Path, checkpoints: str, title: str):
        self.run_dir, self.title = Path(run_dir), title
        self.save_last = checkpoints != "none"
        self.save_best = checkpoints in ("best", "both")
        self.error: RecordError | None = None
        self.last_state: dict | None = None  # the latest resume state written (the snapshot buffer)
        self._buffer_free = threading.Event()
        self._buffer_free.set()
        self._tasks: queue.Queue = queue.Queue()
        self._drawn: tuple | None = None  # what loss_curves.png shows (see _shown)
        self._curve_process: CurveProcess | None = None  # started with the first curves drawn while training goes on
        self._curve_process_failed = False  # it could not start or ended: the curves are drawn here
        # What the helper draws, renamed when due; one left by a killed run is not this one's.
        self._staged_curves = self.run_dir / f"loss_curves.next-{os.getpid()}.png"
        for stale in self.run_dir.glob("loss_curves.next-*.png"):
            stale.unlink(missing_ok=True)
        self._recorded = 0  # epochs (and row sets) recorded so far
        self._thread = threading.Thread(target=self._work, name="losslab-recorder", daemon=True)
        self._thread.start()

    def epoch(self, rows: list[dict], best_epoch: int | None, improved: bool, line: str, state: dict | None,
              last: bool = False) -> None:
        """Record a finished epoch: `rows` so far, its console `line` and the resume `state` to save (live tensors:
        copied here, before training goes on); `last` if the run trains no further epoch."""
        self.raise_error()
        saved = None
        if state is not None and self.save_last:
            self._buffer_free.wait()  # the previous epoch's checkpoint is written: its buffers may be reused
            self.raise_error()  # and if it could not be, training stops here
            self._buffer_free.clear()
            saved = self.last_state = snapshot(state, self.last_state)
        self._put(_Epoch(list(rows), best_epoch, improved, line, saved, last, 0))

    def rows(self, rows: list[dict], best_epoch: int | None, line: str | None = None) -> None:
        """metrics.csv and the curves for `rows` (and a console line), without a checkpoint: e.g. a diverged
        epoch, which is logged but never saved and ends the run."""
        self._put(_Epoch(list(rows), best_epoch, False, line, None, True, 0))

    def note(self, message: str, level: int = logging.INFO) -> None:
        """A console line, logged after everything recorded before it."""
        self._tasks.put((level, message))

    def close(self) -> RecordError | None:
        """Wait until everything recorded is written; the first write that failed, if one did."""
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join()
        if self._curve_process is not None:
            self._curve_process.close()
            self._curve_process = None
        return self.error

    def _put(self, task: _Epoch) -> None:
        self._recorded += 1
        task.number = self._recorded
        self._tasks.put(task)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
        _yield_to_training()
        while (task := self._tasks.get()) is not None:
            try:
                if isinstance(task, tuple):
                    log.log(*task)
                else:
                    self._write(task)
            except Exception as error:  # not a failed write but a bug: kept all the same, and the thread goes on
                log.exception("recording an epoch failed")
                if self.error is None:
                    self.error = RecordError(self.run_dir, error)

    def _write(self, task: _Epoch) -> None:
        staged, buffer_in_use = None, task.state is not None
        try:
            staged = self._begin_curves(task)
            if task.state is not None:
                checkpoints = self.run_dir / "checkpoints"
                self._attempt(checkpoints / "last.pt", save_checkpoint, checkpoints / "last.pt", task.state)
                if task.improved and self.save_best:
                    self._attempt(checkpoints / "best.pt", save_checkpoint, checkpoints / "best.pt",
                                  weights_of(task.state))
                self._buffer_free.set()
                buffer_in_use = False  # the next epoch's snapshot may overwrite it from now on: never set it again
            self._attempt(self.run_dir / "metrics.csv", write_metrics, self.run_dir / "metrics.csv", task.rows)
            if task.line:
                log.info(task.line)
        finally:
            if buffer_in_use:  # whatever went wrong: the training thread never waits forever
                self._buffer_free.set()
            if staged is not None:  # a drawing submitted is always collected: the helper answers in order
                path = self.run_dir / "loss_curves.png"
                if self._attempt(path, self._finish_curves, task, path, staged):
                    self._drawn = _shown(task)

    def _begin_curves(self, task: _Epoch) -> bool | None:
        """None if loss_curves.png needs no drawing for `task` (a later epoch is waiting and draws it, or it shows
        these rows already); else whether the helper process now draws it into the staging file, while the files
        before it are written."""
        if task.number != self._recorded or not task.rows or _shown(task) == self._drawn:
            return None
        if self._curve_process is None and not task.last and not self._curve_process_failed:
            self._curve_process = CurveProcess.start()
            self._curve_process_failed = self._curve_process is None
        if self._curve_process is None:
            return False
        try:
            self._curve_process.submit(task.rows, self._staged_curves, self.title, task.best_epoch)
        except ConnectionError as lost:
            self._lose_curve_process(lost)
            return False
        return True

    def _finish_curves(self, task: _Epoch, path: Path, staged: bool) -> None:
        """Publish the curves the helper drew (a rename), or draw them here."""
        if staged:
            try:
                self._curve_process.result()
                self._staged_curves.replace(path)
                return
            except ConnectionError as lost:
                self._lose_curve_process(lost)
        from losslab.reporting.curves import plot_loss_curves  # matplotlib loads here, off the training thread

        plot_loss_curves(task.rows, path, self.title, task.best_epoch)

    def _lose_curve_process(self, lost: ConnectionError) -> None:
        log.debug("%s; the curves are drawn in the run's process from now on", lost)
        self._curve_process.close()
        self._curve_process, self._curve_process_failed = None, True
        self._staged_curves.unlink(missing_ok=True)

    def _attempt(self, path: Path, write, *args) -> bool:
        try:
            write(*args)
        except Exception as error:  # kept, and raised in the training thread
            if self.error is None:
                self.error = RecordError(path, error)
            log.error("could not write %s: %s", path, _reason(path, error))
            return False
        return True

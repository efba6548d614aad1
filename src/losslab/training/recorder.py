"""The files of every finished epoch, written by a background thread while the next epoch trains.

Per epoch, in this order, so that a run killed at any moment (even by kill -9) resumes with nothing lost or
repeated and never claims more than it kept:
1. checkpoints/last.pt (the resume state), then best.pt (the weights) when the epoch improved;
2. metrics.csv, every epoch so far;
3. the epoch's console line: it is logged only once the epoch's checkpoint is on disk;
4. loss_curves.png, unless a later epoch is already waiting (then only that one is drawn).
The training thread only copies the state to save into buffers that are reused every epoch (a memcpy of weights
and optimizer state), and waits only when the previous epoch's checkpoint is still being written.

A failed write (a full or read-only disk) is kept -- the first one, with its file -- and the thread goes on
writing what it can; the training thread raises it at the next epoch, or when it closes the recorder.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from losslab.errors import LosslabError
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
    number: int  # the how-manieth epoch recorded: only the latest one is drawn


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
        self._drawn: tuple | None = None  # (epochs, best epoch) of loss_curves.png as drawn
        self._recorded = 0  # epochs (and row sets) recorded so far
        self._thread = threading.Thread(target=self._work, name="losslab-recorder", daemon=True)
        self._thread.start()

    def epoch(self, rows: list[dict], best_epoch: int | None, improved: bool, line: str, state: dict | None) -> None:
        """Record a finished epoch: `rows` so far, its console `line` and the resume `state` to save (live tensors:
        copied here, before training goes on)."""
        self.raise_error()
        saved = None
        if state is not None and self.save_last:
            self._buffer_free.wait()  # the previous epoch's checkpoint is written: its buffers may be reused
            self._buffer_free.clear()
            saved = self.last_state = snapshot(state, self.last_state)
        self._put(_Epoch(list(rows), best_epoch, improved, line, saved, 0))

    def rows(self, rows: list[dict], best_epoch: int | None, line: str | None = None) -> None:
        """metrics.csv and the curves for `rows` (and a console line), without a checkpoint: e.g. a diverged
        epoch, which is logged but never saved."""
        self._put(_Epoch(list(rows), best_epoch, False, line, None, 0))

    def note(self, message: str, level: int = logging.INFO) -> None:
        """A console line, logged after everything recorded before it."""
        self._tasks.put((level, message))

    def close(self) -> RecordError | None:
        """Wait until everything recorded is written; the first write that failed, if one did."""
        if self._thread.is_alive():
            self._tasks.put(None)
            self._thread.join()
        return self.error

    def _put(self, task: _Epoch) -> None:
        self._recorded += 1
        task.number = self._recorded
        self._tasks.put(task)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _work(self) -> None:
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
        if task.state is not None:
            checkpoints = self.run_dir / "checkpoints"
            try:
                self._attempt(checkpoints / "last.pt", save_checkpoint, checkpoints / "last.pt", task.state)
                if task.improved and self.save_best:
                    self._attempt(checkpoints / "best.pt", save_checkpoint, checkpoints / "best.pt",
                                  weights_of(task.state))
            finally:
                self._buffer_free.set()
        self._attempt(self.run_dir / "metrics.csv", write_metrics, self.run_dir / "metrics.csv", task.rows)
        if task.line:
            log.info(task.line)
        if task.number == self._recorded:  # else a later epoch is waiting, and draws the curves itself
            self._draw(task.rows, task.best_epoch)

    def _draw(self, rows: list[dict], best_epoch: int | None) -> None:
        """loss_curves.png of `rows`, unless it already shows exactly them."""
        drawn = (tuple(row["epoch"] for row in rows), best_epoch)
        if not rows or drawn == self._drawn:
            return
        from losslab.reporting.curves import plot_loss_curves  # matplotlib loads here, off the training thread

        path = self.run_dir / "loss_curves.png"
        if self._attempt(path, plot_loss_curves, rows, path, self.title, best_epoch):
            self._drawn = drawn

    def _attempt(self, path: Path, write, *args) -> bool:
        try:
            write(*args)
        except Exception as error:  # kept, and raised in the training thread
            if self.error is None:
                self.error = RecordError(path, error)
            log.error("could not write %s: %s", path, _reason(path, error))
            return False
        return True

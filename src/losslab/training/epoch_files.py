"""The files of a finished epoch, written by the training process before the next epoch begins.

In this order, so that a run killed at any moment (even by kill -9) resumes with nothing lost or repeated and never
claims more than it kept:
1. checkpoints/last.pt (the resume state), then best.pt (the weights) when the epoch improved: from here on the
   epoch is finished, whatever happens to the process;
2. metrics.csv, every epoch so far;
3. the epoch's console line, so a line never names an epoch that a kill could still lose;
4. loss_curves.png.
Every file is written beside its name and renamed over it, so a kill leaves the old file or the new one.

A write that fails (a full or read-only disk) does not keep the others of its epoch from being written -- metrics.csv
and the curves still record what was trained -- but the epoch line is not logged, and the first failure is raised
once the epoch's files are done: the run stops there, naming the file.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

from losslab.errors import LosslabError
from losslab.reporting.curves import plot_loss_curves
from losslab.reporting.history import write_metrics
from losslab.training.checkpoints import save_checkpoint, weights_of

log = logging.getLogger("losslab.training.run")


class RecordError(LosslabError):
    """A file of the run folder could not be written."""

    def __init__(self, path: Path, error: BaseException):
        self.path, self.error = path, error
        super().__init__(f"could not write {path}: {reason(path, error)}")


def reason(path: Path, error: BaseException) -> str:
    """The operating system's reason (e.g. "Read-only file system"), also when torch.save hid it; a full disk is
    named, with the space left on it."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return no_space(path.parent)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    probe = path.with_name(path.name + ".tmp")  # torch.save says only that its file "cannot be opened": ask why
    try:
        probe.touch()
    except OSError as found:
        return found.strerror or str(found)
    probe.unlink(missing_ok=True)
    return str(error) or type(error).__name__


def no_space(folder: Path) -> str:
    """"no space left on DEVICE (N MB free)" for the file system holding `folder`."""
    mount = Path(os.path.abspath(folder))
    while not mount.exists() or not os.path.ismount(mount):
        mount = mount.parent
    try:
        free = f"{shutil.disk_usage(mount).free / 1e6:.0f} MB free"
    except OSError:
        free = "free space unknown"
    device = _device_of(mount)
    return f"no space left on {device} mounted at {mount} ({free})" if device else f"no space left on {mount} ({free})"


def _device_of(mount: Path) -> str | None:
    """The device mounted at `mount`, as /proc/self/mounts names it (Linux); None elsewhere."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    found = [fields[0] for fields in map(str.split, lines) if len(fields) > 1 and fields[1] == str(mount)]
    return found[-1] if found else None  # the last mount there is the one in force


class EpochFiles:
    """Writes each epoch's files into `run_dir`; `checkpoints` says which checkpoints are written while the run
    trains ("none": none at all, else last.pt always and best.pt for "best"/"both")."""

    def __init__(self, run_dir: Path, checkpoints: str, title: str):
        self.run_dir, self.title = Path(run_dir), title
        self.save_last = checkpoints != "none"
        self.save_best = checkpoints in ("best", "both")

    def write(self, rows: list[dict], best_epoch: int | None, improved: bool, line: str,
              state: dict | None = None) -> None:
        """The files of the epoch that ends `rows`: its resume `state` (None: no checkpoint, e.g. for a diverged
        epoch), metrics.csv, its console `line` and the curves. Raises RecordError if one could not be written."""
        errors: list[RecordError] = []
        last, best = self.run_dir / "checkpoints" / "last.pt", self.run_dir / "checkpoints" / "best.pt"
        metrics, curves = self.run_dir / "metrics.csv", self.run_dir / "loss_curves.png"
        if state is not None and self.save_last:
            _attempt(errors, last, lambda: save_checkpoint(last, state))
            if improved and self.save_best and not errors:  # best.pt never holds an epoch last.pt lacks
                _attempt(errors, best, lambda: save_checkpoint(best, weights_of(state)))
        _attempt(errors, metrics, lambda: write_metrics(metrics, rows))
        if not errors:
            log.info(line)
        _attempt(errors, curves, lambda: plot_loss_curves(rows, curves, self.title, best_epoch))
        if errors:
            raise errors[0]


def _attempt(errors: list[RecordError], path: Path, write) -> None:
    """Call `write` (which writes `path`); a failure is logged and kept in `errors`."""
    try:
        write()
    except Exception as error:  # noqa: BLE001 (kept, and raised once the epoch's other files are written)
        errors.append(RecordError(path, error))
        log.error("could not write %s: %s", path, reason(path, error))

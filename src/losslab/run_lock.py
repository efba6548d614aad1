"""Who owns a run folder, and what it holds as its files show: an exclusive lock on RUN_DIR/.lock that one process
holds for the life of a run or a resume, whether a folder already holds a run, and whether that run can be resumed.
Plain Python (no torch, no Hydra), so every layer may use it: the run (which takes the lock before it writes
anything into its folder), the sweep callback and `losslab runs`.

The lock is a POSIX record lock (`fcntl.lockf`): the kernel drops it when its process ends, even by kill -9, and a
process's children (DataLoader workers) do not inherit it. The lock file holds the owner's process id, which the
refusal names. Linux and macOS; on network file systems it is as good as their lock support (NFSv4 has it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from losslab.errors import LosslabError

LOCK_FILE = ".lock"
# What a run writes once it has started; the refusal of a folder that holds a run names those it finds.
RUN_FILES = ("metrics.csv", "summary.json", "split.json", "checkpoints")
# A run has finished an epoch once one of these is on disk (the checkpoint is written first, then metrics.csv).
CHECKPOINTS = ("checkpoints/last.pt", "checkpoints/best.pt")

_held: dict[Path, int] = {}  # the folders this process owns -> the open lock file


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds a run that finished an epoch: a checkpoint, or a metrics.csv row (trainer.checkpoints=
    none). A run that stopped before (refused data, killed in epoch 1) left nothing to keep: its folder may be
    used again."""
    folder = Path(folder)
    return any((folder / name).is_file() for name in CHECKPOINTS) or _has_rows(folder / "metrics.csv")


def _has_rows(metrics: Path) -> bool:
    """Whether metrics.csv holds a row below its header."""
    try:
        with metrics.open(errors="replace") as lines:
            return sum(1 for line, _ in zip(lines, range(2), strict=False) if line.strip()) > 1
    except OSError:
        return False


def resumable(folder: Path) -> bool:
    """Whether `folder` holds a run that `train resume=` can continue: a checkpoints/last.pt that its run did not
    reduce to weights when it finished (summary.json says so with "resumable": false)."""
    folder = Path(folder)
    if not (folder / "checkpoints" / "last.pt").is_file():
        return False
    try:
        return json.loads((folder / "summary.json").read_text()).get("resumable", True) is not False
    except (OSError, ValueError, AttributeError):
        return True  # killed before its summary: last.pt is the resume state written every epoch


def claim(folder: Path) -> None:
    """Make this process the owner of `folder` (created if needed) until `release`; a no-op if it already is.

    Raises a LosslabError naming the owner's process id when another process holds the folder, or saying that the
    folder cannot be written.
    """
    folder = Path(folder)
    key = folder.resolve()
    if key in _held:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _held[key] = _lock(folder / LOCK_FILE)
    except OSError as error:
        raise LosslabError(f"run folder {folder} cannot be written ({error.strerror or error}): a run writes its "
                           "checkpoints, metrics.csv and train.log there. Choose a writable folder (to continue a "
                           "run kept on a read-only disk, copy its folder somewhere writable and resume the copy)."
                           ) from error


def _lock(path: Path) -> int:
    """The open, locked lock file at `path`, holding this process's id."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_owner(fd)
            os.close(fd)
            raise LosslabError(f"run folder {path.parent} is in use by process {owner or '(unknown)'}: a train or "
                               "resume holds its lock, and two processes would mix their files. Wait for it to end "
                               "(or stop it), or choose another run_dir.") from None
        try:
            same_file = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if same_file:  # else its owner removed the file between our open and our lock: take the new one
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release(folder: Path) -> None:
    """Give up the ownership `claim` took (nothing if this process does not own `folder`)."""
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is None:
        return
    # Remove the file while still holding the lock, so nobody locks a file that is about to go. In a folder that
    # turned read-only the stale file stays, harmless: the kernel drops the lock below.
    with contextlib.suppress(OSError):
        os.unlink(Path(folder) / LOCK_FILE)
    os.close(fd)


def release_all() -> None:
    """Give up every folder this process owns (whatever way its run ended)."""
    for folder in list(_held):
        release(folder)


def owned(folder: Path) -> bool:
    """Whether this process owns `folder`."""
    return Path(folder).resolve() in _held


def owner(folder: Path) -> int | None:
    """The process id holding `folder`'s lock, or None when no process holds it."""
    if owned(folder):
        return os.getpid()
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a shared lock conflicts with the owner's exclusive one
    except OSError:
        return _read_owner(fd) or -1
    else:
        return None
    finally:
        os.close(fd)  # also drops the test lock just taken


def _read_owner(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None

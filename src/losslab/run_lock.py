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
import io
import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from losslab.errors import LosslabError

LOCK_FILE = ".lock"
# What a run writes once it has started; the refusal of a folder that holds a run names those it finds.
RUN_FILES = ("metrics.csv", "summary.json", "split.json", "checkpoints")
# A run has finished an epoch once one of these is on disk (the checkpoint is written first, then metrics.csv).
CHECKPOINTS = ("checkpoints/last.pt", "checkpoints/best.pt")
_YAML = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, several times faster, where PyYAML has it
FINISHED = ("completed", "stopped_early", "diverged")  # statuses of a run that does not go on by itself
RESUME_STATE = ("optimizer", "scheduler", "rng", "history")  # what a resume state holds beyond the weights

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
    """Whether `folder` holds a run that `train resume=` can continue: a whole checkpoints/last.pt holding the resume
    state, which its run did not reduce to weights when it finished (summary.json says so with "resumable": false)."""
    return saved_resume_state(folder) is not None


def saved_resume_state(folder: Path) -> SavedCheckpoint | None:
    """What the resume state in `folder` holds (see resumable), or None where there is none."""
    path = resume_file(Path(folder))
    saved = peek_checkpoint(path) if path is not None else None
    return saved if saved is not None and saved.resume else None


def resume_file(folder: Path) -> Path | None:
    """checkpoints/last.pt, unless `folder` has none or its summary.json says its run kept no resume state."""
    path = Path(folder) / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    return None if _summary(folder).get("resumable", True) is False else path


def to_finish(folder: Path, saved: SavedCheckpoint | None) -> bool:
    """Whether `folder`, whose resume state is `saved` (saved_resume_state), holds a run that trained every planned
    epoch but never ended (killed or interrupted before its summary said so): `train resume=` finishes it without
    training."""
    return saved is not None and saved.planned is not None and saved.epoch >= saved.planned and not ended(folder)


def ended(folder: Path) -> bool:
    """Whether the run in `folder` ended (summary.json: completed, stopped early or diverged)."""
    return _summary(folder).get("status") in FINISHED


def _summary(folder: Path) -> dict:
    try:
        summary = json.loads((Path(folder) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}  # killed before its summary
    return summary if isinstance(summary, dict) else {}


@dataclass(frozen=True)
class SavedCheckpoint:
    """What a checkpoint holds, as peek_checkpoint reads it."""

    epoch: int
    resume: bool  # the resume state, not only the weights
    planned: int | None  # its config's trainer.max_epochs


def peek_checkpoint(path: Path) -> SavedCheckpoint | None:
    """The epoch, kind and planned length of a checkpoint, read in milliseconds without torch or its tensors; None
    when `path` is not a whole checkpoint that losslab wrote (garbage, cut short, empty, naming code). Nothing it
    names is imported or called: every class is read as an opaque stand-in."""
    try:
        top = _OpaqueUnpickler(io.BytesIO(_pickled(Path(path)))).load()
        config = yaml.load(top["config"], Loader=_YAML) if isinstance(top.get("config"), str) else None
        planned = config.get("trainer", {}).get("max_epochs") if isinstance(config, dict) else None
        return SavedCheckpoint(int(top["epoch"]), all(key in top for key in RESUME_STATE),
                               planned if isinstance(planned, int) else None)
    except Exception:  # noqa: BLE001 (whatever makes it unreadable, it is not a checkpoint to resume)
        return None


def _pickled(path: Path) -> bytes:
    """The pickle (data.pkl) of the zip archive torch.save writes, read as stored. zipfile's own reading would check
    the CRC32 that losslab's checkpoints leave out (losslab.training.checkpoints)."""
    with zipfile.ZipFile(path) as archive:  # a cut-short file has no central directory at its end
        info = next(info for info in archive.infolist() if info.filename.endswith("/data.pkl"))
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError("torch.save stores its records uncompressed")
    with path.open("rb") as file:
        file.seek(info.header_offset)
        header = file.read(30)
        if header[:4] != b"PK\x03\x04":
            raise ValueError("no local file header")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        file.seek(info.header_offset + 30 + name_length + extra_length)
        data = file.read(info.file_size)
    if len(data) != info.file_size:
        raise ValueError("cut short")
    return data


class _Opaque:
    """Stands for every object a checkpoint's pickle names (tensors, storages, ordered dicts): built, filled and
    set without running anything."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class _OpaqueUnpickler(pickle.Unpickler):
    # What a checkpoint torch.save wrote names (tensors, ordered dicts, numpy scalars); anything else is code a
    # weights_only load refuses, so the file is no checkpoint to resume.
    NAMED = ("torch", "collections", "numpy", "_codecs")

    def find_class(self, module: str, name: str) -> type:
        if module.split(".")[0] not in self.NAMED:
            raise pickle.UnpicklingError(f"{module}.{name} is not what a checkpoint holds")
        return _Opaque

    def persistent_load(self, pid) -> None:
        return None  # a tensor's storage: left in the archive


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

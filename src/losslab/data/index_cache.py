"""A cache of checked dataset indexes (`data.cache`, on by default): every later run or sweep job over the same
unchanged files reads the index a first run built instead of parsing the annotations and probing every image again.

Where: `$LOSSLAB_CACHE`, else `$XDG_CACHE_HOME/losslab`, else `~/.cache/losslab`; one file per dataset under
`datasets/`, named by a hash of what the index is built from: the reader, its options (absolute paths, flags), the
cache's format and the source code of the modules that build it, and the versions of Pillow and numpy. Never a
file in the data's own folders. Deleting the folder is always safe.

When a cached index is used: its file holds the state of every input when the index was built: for each file (the
annotation file; data=yolo's data.yaml and list files) its size, modification and change times (ns), inode and
device; for each folder (the images; data=yolo's image and label folders, one that does not exist counted as such)
the same of every entry below it, by relative name, with a symbolic link's target, read with os.scandir (a listing
and one stat per file, about a second per 100k images on a slow disk). Any difference (an annotation file edited,
an image touched, replaced, added or removed, a link pointed elsewhere) refuses the cache and the index is built and
checked again. The state is taken before building, so a file changed while it was being read is seen next time.

Safety: a cache file is plain arrays and JSON (numpy's .npz, read without pickle), written to a temporary file
beside it and renamed over it (os.replace): jobs of a sweep building at once each write a whole file, a reader never
sees a partial one, and the last rename wins (any of them is right). A file that cannot be read back (truncated,
corrupt, another format) is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import numpy as np
import PIL

log = logging.getLogger(__name__)

FORMAT = 1  # the layout of a cache file; a change makes every older file a miss
Index = tuple[dict[str, np.ndarray], dict]  # what a reader caches: named arrays and JSON-able values


def cache_folder() -> Path:
    """Where dataset indexes are cached: $LOSSLAB_CACHE, $XDG_CACHE_HOME/losslab or ~/.cache/losslab."""
    if os.environ.get("LOSSLAB_CACHE"):
        return Path(os.environ["LOSSLAB_CACHE"]).expanduser() / "datasets"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "losslab" / "datasets"


def cached_index(reader: str, options: dict, files: Iterable[Path], folders: Iterable[Path],
                 code: Iterable[ModuleType], build: Callable[[], Index], enabled: bool = True) -> Index:
    """The index `build` returns for these inputs, read from the cache when nothing changed since it was written.

    `options` names the index (JSON-able; absolute paths), `files` and `folders` are everything it is read from,
    `code` the modules whose logic it depends on. With `enabled` false, `build` runs and nothing is read or written.
    A reader of another layout (data=yolo) calls this the same way: its data section's options, its list files and
    its image and label folders.
    """
    if not enabled:
        return build()
    identity = json.dumps({"format": FORMAT, "reader": reader, "options": options, "code": _code_digest(code),
                           "pillow": PIL.__version__, "numpy": np.__version__}, sort_keys=True)
    path = cache_folder() / f"{reader}-{hashlib.sha256(identity.encode()).hexdigest()[:24]}.npz"
    state = input_state(files, folders)
    found = _read(path, identity, state)
    if found is not None:
        log.info("%s dataset index read from the cache %s (its files are unchanged)", reader, path)
        return found
    index = build()
    _write(path, identity, state, index)
    return index


def input_state(files: Iterable[Path], folders: Iterable[Path]) -> str:
    """A digest of the files' and of every entry below the folders' names, sizes, times, inodes and link targets; a
    folder that does not exist (or is not a folder) counts as such."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(repr(("file", str(file), _stat(file))).encode())
    for folder in folders:
        if os.path.isdir(folder):
            digest.update(repr(("folder", str(folder), list(_entries(Path(folder))))).encode())
        else:  # not there yet (data=yolo's labels/ of an unlabelled split): creating it later must refuse the cache
            digest.update(repr(("not a folder", str(folder), _stat(Path(folder)))).encode())
    return digest.hexdigest()


def outermost(folders: Iterable[Path]) -> list[Path]:
    """The folders of `folders` that lie below no other of them, sorted: input_state walks each one recursively,
    so the others' entries are already in it."""
    kept: list[Path] = []
    # By parts, not by text: a folder's subfolders then follow it at once ("a/b c" sorts between "a/b" and "a/b/x").
    for folder in sorted({Path(os.path.normpath(folder)) for folder in folders}, key=lambda folder: folder.parts):
        if not kept or not folder.is_relative_to(kept[-1]):
            kept.append(folder)
    return kept


def _stat(path: Path | os.DirEntry) -> tuple:
    try:
        found = path.stat()  # the target's, for a link
    except OSError as error:
        return ("unreadable", type(error).__name__)
    return found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino, found.st_dev


def _entries(folder: Path) -> Iterable[tuple]:
    """(relative name, stat, link target) of every entry below `folder`, sorted; linked folders followed once."""
    seen: set[tuple[int, int]] = set()
    pending = [(folder, "")]
    while pending:
        directory, prefix = pending.pop()
        identity = os.stat(directory)
        if (identity.st_dev, identity.st_ino) in seen:  # a link loop, or two links to one folder
            continue
        seen.add((identity.st_dev, identity.st_ino))
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            name = prefix + entry.name
            link = os.readlink(entry.path) if entry.is_symlink() else None
            if entry.is_dir():
                pending.append((Path(entry.path), name + "/"))
                yield name, "folder", link
            else:
                yield name, _stat(entry), link


def _code_digest(modules: Iterable[ModuleType]) -> str:
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _read(path: Path, identity: str, state: str) -> Index | None:
    """The cached index when the file exists, reads back whole and was built from inputs in `state`; else None."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            header = json.loads(bytes(stored["__header__"]).decode())
            if header["identity"] != identity or header["state"] != state:
                log.info("the dataset index in %s is out of date (its files changed): building it again", path)
                return None
            return {name: stored[name] for name in stored.files if not name.startswith("__")}, header["values"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        log.warning("the dataset index cache %s cannot be read (%s): building it again", path, error)
        return None


def _write(path: Path, identity: str, state: str, index: Index) -> None:
    arrays, values = index
    header = json.dumps({"identity": identity, "state": state, "values": values}).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp", delete=False) as file:
            try:
                np.savez(file, __header__=np.frombuffer(header, dtype=np.uint8), **arrays)
                file.flush()
                os.fsync(file.fileno())
            except BaseException:
                os.unlink(file.name)
                raise
        os.replace(file.name, path)
    except OSError as error:  # a cache that cannot be written costs time, never the run
        log.warning("the dataset index cannot be cached in %s (%s); set data.cache=false to stop trying", path, error)

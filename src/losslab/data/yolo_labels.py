"""Ultralytics' label files (`data=yolo`): one object per line, `class cx cy w h` (a box) or `class x1 y1 x2 y2 x3 y3
...` (a polygon of 3 points or more), normalised to the image's width and height; every bad line of a kind reported
at once, naming file:line.

Read in chunks of files: a chunk's numbers are parsed with Python's float (so exactly the numbers a line-by-line
reading accepts) and checked in a few numpy passes; a chunk with any line that is not a good one is read again line
by line, which names each problem. A per-line object for each of 800k lines was most of a first load's time and
memory.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from losslab.data.images import counted, listing
from losslab.errors import LosslabError

TOLERANCE = 0.01  # how far past [0, 1] a coordinate is clipped rather than refused (Ultralytics allows 1%)
CHUNK = 512  # label files parsed at once: large enough for numpy, small enough that their tokens stay small


@dataclass
class Labels:
    """Every object of the label files, flat and in file order: object m of file f is among `counts[f]` objects of
    it; its class index, its normalised coordinates (4 for a box, 6 or more for a polygon, clipped into [0, 1]) at
    `coordinates[sum(lengths[:m]):][:lengths[m]]`, and its line number in its file."""

    paths: list[str | None]
    counts: np.ndarray  # int64 per file
    classes: np.ndarray  # int64 per object
    lengths: np.ndarray  # int64 per object
    coordinates: np.ndarray  # float64
    lines: np.ndarray  # int64 per object, from 1
    clipped_lines: int  # lines with coordinates outside [0, 1] by at most TOLERANCE

    def where(self, objects: np.ndarray) -> list[str]:
        """file:line of each of `objects` (indices), for messages."""
        files = np.repeat(np.arange(len(self.counts)), self.counts)[objects].tolist()
        return [f"{self.paths[file]}:{line}" for file, line in zip(files, self.lines[objects].tolist(), strict=True)]


@dataclass
class _Problems:
    malformed: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


class _Undecodable:
    """A file's text that is not UTF-8."""


def read_labels(paths: list[str | None], num_classes: int) -> Labels:
    """The objects of every label file (None: a missing file, which has none); one LosslabError naming file:line for
    the first kind of bad line: unreadable, a class index not in 0..num_classes-1, coordinates far outside [0, 1]."""
    problems = _Problems()
    chunks = [_read_chunk(paths[start:start + CHUNK], num_classes, problems) for start in range(0, len(paths), CHUNK)]
    rule = ("each line is `class cx cy w h` (a box) or `class x1 y1 x2 y2 x3 y3 ...` (a polygon of 3 points or more), "
            "a whole class index followed by numbers")
    _raise_if(problems.malformed, f"label lines that cannot be read: {rule}")
    _raise_if(problems.classes, f"class indices outside the data.yaml's {counted(num_classes, 'class', 'classes')} "
              f"(0..{num_classes - 1}): add the missing names to the data.yaml or fix the lines")
    _raise_if(problems.outside, f"coordinates outside [0, 1] by more than {TOLERANCE}: label coordinates are "
              "fractions of the image's width and height (pixel coordinates must be divided by them)")
    counts, classes, lengths, coordinates, lines, clipped = zip(*chunks, strict=True) if chunks else [[]] * 6
    return Labels(paths, _joined(counts, np.int64), _joined(classes, np.int64), _joined(lengths, np.int64),
                  _joined(coordinates, np.float64), _joined(lines, np.int64), int(sum(clipped)))


def _joined(parts: tuple, dtype: type) -> np.ndarray:
    """The chunks' arrays (or lists, from the line-by-line reading) as one array."""
    return np.concatenate([np.zeros(0, dtype), *parts]).astype(dtype)


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise LosslabError(f"{len(problems)} {what}; {listing(problems)}.")


def _text(path: str | None) -> str | _Undecodable | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError:
        return _Undecodable()


def _read_chunk(paths: list[str | None], num_classes: int, problems: _Problems) -> tuple:
    """(objects per file, classes, lengths, coordinates, line numbers, clipped lines) of a few files."""
    texts = [_text(path) for path in paths]
    parsed = _parsed(texts, num_classes) if not any(isinstance(text, _Undecodable) for text in texts) else None
    if parsed is not None:
        return parsed
    per_file = [_read_label_file(path, text, num_classes, problems) for path, text in zip(paths, texts, strict=True)]
    objects = [line for lines in per_file for line in lines]
    return ([len(lines) for lines in per_file], [line[1] for line in objects],
            [len(line[2]) for line in objects], [value for line in objects for value in line[2]],
            [line[0] for line in objects], sum(line[3] for line in objects))


def _parsed(texts: list[str | None], num_classes: int) -> tuple | None:
    """_read_chunk's result when every line of `texts` is a good one (a clipped one included), else None."""
    file_lines = [text.splitlines() if text else [] for text in texts]
    fields = list(map(str.split, itertools.chain.from_iterable(file_lines)))
    try:
        values = np.array(list(map(float, itertools.chain.from_iterable(fields))), dtype=np.float64)
    except ValueError:
        return None
    tokens = np.fromiter(map(len, fields), dtype=np.int64, count=len(fields))
    used = tokens > 0  # empty lines are skipped
    sizes = tokens[used] - 1  # coordinates per object
    if not ((sizes == 4) | ((sizes >= 6) & (sizes % 2 == 0))).all() or not np.isfinite(values).all():
        return None
    firsts = np.cumsum(tokens[used]) - tokens[used]
    classes = values[firsts]
    if not ((classes == np.floor(classes)) & (classes >= 0) & (classes < num_classes)).all():
        return None
    is_coordinate = np.ones(len(values), dtype=bool)
    is_coordinate[firsts] = False
    coordinates = values[is_coordinate]
    low, high = np.ones(len(sizes)), np.zeros(len(sizes))  # no object: nothing outside
    if len(sizes):
        starts = np.cumsum(sizes) - sizes
        low, high = np.minimum.reduceat(coordinates, starts), np.maximum.reduceat(coordinates, starts)
    if ((low < -TOLERANCE) | (high > 1 + TOLERANCE)).any():
        return None
    per_file = np.array(list(map(len, file_lines)), dtype=np.int64)
    ends = np.cumsum(per_file)
    numbers = np.arange(len(tokens)) - np.repeat(ends - per_file, per_file) + 1
    objects_before = np.concatenate([[0], np.cumsum(used)])  # objects on the lines before line l
    counts = objects_before[ends] - objects_before[ends - per_file]
    # As min(max(value, 0), 1) clips (a -0.0 is kept as it is), so both readings give the same bytes.
    clipped = np.where(coordinates < 0, 0.0, np.where(coordinates > 1, 1.0, coordinates))
    return counts, classes.astype(np.int64), sizes, clipped, numbers[used], int(((low < 0) | (high > 1)).sum())


def _read_label_file(path: str | None, text: str | _Undecodable | None, num_classes: int,
                     problems: _Problems) -> list[tuple[int, int, list[float], bool]]:
    """(line number, class index, coordinates clipped into [0, 1], whether any was clipped) of every good line of
    one file; its bad lines each added to `problems`."""
    if text is None:
        return []
    if isinstance(text, _Undecodable):
        problems.malformed.append(f"{path} (not a UTF-8 text file)")
        return []
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        try:
            values = [float(value) for value in fields]
        except ValueError:
            problems.malformed.append(f"{where} ({line.strip()[:60]!r})")
            continue
        count = len(values) - 1
        if not all(map(math.isfinite, values)) or not values[0].is_integer() or not (
                count == 4 or (count >= 6 and count % 2 == 0)):
            problems.malformed.append(f"{where} ({line.strip()[:60]!r})")
            continue
        index, coordinates = int(values[0]), values[1:]
        low, high = min(coordinates), max(coordinates)
        if not 0 <= index < num_classes:
            problems.classes.append(f"{where} (class {index})")
        elif low < -TOLERANCE or high > 1 + TOLERANCE:
            problems.outside.append(f"{where} ({low:g}..{high:g})")
        else:
            clipped = [min(max(value, 0.0), 1.0) for value in coordinates]
            lines.append((number, index, clipped, low < 0 or high > 1))
    return lines

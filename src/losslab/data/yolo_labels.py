"""Ultralytics' label files (`data=yolo`): one object per line, `class cx cy w h` (a box) or `class x1 y1 x2 y2 x3 y3
...` (a polygon of 3 points or more), normalised to the image's width and height; every bad line of a kind reported
at once, naming file:line."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from losslab.data.images import counted, listing
from losslab.errors import LosslabError

TOLERANCE = 0.01  # how far past [0, 1] a coordinate is clipped rather than refused (Ultralytics allows 1%)


@dataclass
class LabelLine:
    """One object of a label file: its class index, its normalised coordinates (4 for a box, 6 or more for a
    polygon), whether any was clipped into [0, 1], and where it is (file:line) for messages."""

    index: int
    coordinates: list[float]
    where: str
    clipped: bool = False

    @property
    def is_polygon(self) -> bool:
        return len(self.coordinates) > 4


@dataclass
class _Problems:
    malformed: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


def read_labels(paths: list[Path], num_classes: int) -> list[list[LabelLine]]:
    """The objects of every label file (a missing file has none); one LosslabError naming file:line for the first
    kind of bad line: unreadable, a class index not in 0..num_classes-1, coordinates far outside [0, 1]."""
    problems = _Problems()
    parsed = [_read_label_file(path, num_classes, problems) if path.is_file() else [] for path in paths]
    rule = ("each line is `class cx cy w h` (a box) or `class x1 y1 x2 y2 x3 y3 ...` (a polygon of 3 points or more), "
            "a whole class index followed by numbers")
    _raise_if(problems.malformed, f"label lines that cannot be read: {rule}")
    _raise_if(problems.classes, f"class indices outside the data.yaml's {counted(num_classes, 'class', 'classes')} "
              f"(0..{num_classes - 1}): add the missing names to the data.yaml or fix the lines")
    _raise_if(problems.outside, f"coordinates outside [0, 1] by more than {TOLERANCE}: label coordinates are "
              "fractions of the image's width and height (pixel coordinates must be divided by them)")
    return parsed


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        raise LosslabError(f"{len(problems)} {what}; {listing(problems)}.")


def _read_label_file(path: Path, num_classes: int, problems: _Problems) -> list[LabelLine]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
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
        elif low < 0 or high > 1:
            clipped = [min(max(value, 0.0), 1.0) for value in coordinates]
            lines.append(LabelLine(index, clipped, where, clipped != coordinates))
        else:  # most lines: nothing to clip, no copy to make
            lines.append(LabelLine(index, coordinates, where))
    return lines

"""Reading a COCO instances file without holding every annotation as Python objects (`read_coco`).

json.load of a file with 800k polygon annotations holds about 12 million Python objects (a dict, lists and a float
object per coordinate: over 1 GB). Here the top-level object is walked by hand and each annotation is decoded by
json's own scanner, checked and copied into flat columns (`Annotations`) a chunk at a time, then let go: the file's
text and the columns are what stays. Everything else (images, categories, any other key) is decoded as usual.
JSON syntax errors are json's own JSONDecodeError, with the position in the whole file.
"""

from __future__ import annotations

import json
import math
import re
from array import array

import numpy as np

NO_ID = object()  # an annotation without an 'id'
CHUNK = 4096  # annotations decoded before they are copied into columns and let go
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
ANNOTATION_FIELDS = {"image_id": int, "category_id": int, "bbox": list}


class Annotations:
    """The annotations of a COCO file as columns, in the file's order, with what is wrong with them.

    Columns are filled while nothing is wrong with an entry's fields (after the first such entry, only problems are
    collected: the file is refused). Boxes that are not four numbers get NaN and a problem; polygons (lists of at
    least six coordinates) are concatenated in `coords`, `polygon_counts` and `lengths` saying where each lies.
    """

    def __init__(self):
        self.count = 0
        self.field_problems: list[str] = []  # entries without the fields every annotation needs
        self.bbox_problems: list[str] = []
        self.polygon_problems: dict[int, str] = {}  # annotation index -> why its polygon is unusable
        self.ids: list = []  # each annotation's id, or NO_ID
        self.image_ids: list[int] = []
        self.category_ids: list[int] = []
        self.crowd = bytearray()
        self.boxes = array("d")  # x, y, width, height of each annotation
        self.areas = array("d")  # each annotation's own area (a polygon's or mask's), NaN where it gives none
        self.polygon_counts = array("q")
        self.lengths = array("q")  # coordinates of each polygon
        self.coords = array("d")
        self.rles: dict[int, dict] = {}  # annotation index -> its RLE, as given
        self.crowds: dict[int, list] = {}  # image id -> its crowd regions' segmentations, as given

    def __len__(self) -> int:
        return self.count

    def name(self, i: int) -> str:
        """How an error names annotation `i`: by its id, or by its image when it has none."""
        return f"id {self.ids[i]}" if self.ids[i] is not NO_ID else f"without id of image {self.image_ids[i]}"

    def add(self, chunk: list) -> None:
        for entry in chunk:
            if not (type(entry) is dict and type(entry.get("image_id")) is int
                    and type(entry.get("category_id")) is int and type(entry.get("bbox")) is list):
                self.field_problems.append(_field_problem(self.count, entry))
            elif not self.field_problems:
                self._copy(entry)
            self.count += 1

    def _copy(self, entry: dict) -> None:
        self.ids.append(entry.get("id", NO_ID))
        self.image_ids.append(entry["image_id"])
        self.category_ids.append(entry["category_id"])
        self.crowd.append(bool(entry.get("iscrowd", 0)))
        box = _numbers(entry["bbox"])
        if box is None or len(box) != 4:
            self.bbox_problems.append(f"annotation {self.name(self.count)}: bbox {entry['bbox']}")
            box = array("d", [np.nan] * 4)
        self.boxes.extend(box)
        self.areas.append(given_area(entry.get("area")))
        segmentation = entry.get("segmentation")
        polygons = 0
        if isinstance(segmentation, dict):
            self.rles[self.count] = segmentation
        elif isinstance(segmentation, list):
            for polygon in segmentation:
                if isinstance(polygon, list) and len(polygon) >= 6:
                    numbers = _numbers(polygon, strict=False)
                    if numbers is None:
                        self.polygon_problems[self.count] = (f"annotation {self.name(self.count)}: polygon "
                                                             "coordinates must be numbers")
                        continue
                    self.coords.extend(numbers)
                    self.lengths.append(len(numbers))
                    polygons += 1
        self.polygon_counts.append(polygons)
        if self.crowd[-1] and segmentation:
            self.crowds.setdefault(entry["image_id"], []).append(segmentation)


def _numbers(values: list, strict: bool = True) -> array | None:
    """`values` as doubles, or None when they are not all numbers (with `strict` false, numpy's reading: a numeric
    string or a null, NaN, is taken, as pycocotools would take them)."""
    try:
        return array("d", values)
    except (TypeError, OverflowError):
        if strict:
            return None
    try:
        flat = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    return array("d", flat.tolist()) if flat.ndim == 1 else None


def _field_problem(i: int, entry: object) -> str:
    if not isinstance(entry, dict):
        return f"annotations[{i}] is {type(entry).__name__}"
    wrong = [name for name, kind in ANNOTATION_FIELDS.items()
             if not isinstance(entry.get(name), kind) or isinstance(entry.get(name), bool)]
    return f"annotations[{i}] ({', '.join(f'{name}={entry.get(name)!r}' for name in wrong)})"


def read_coco(text: str) -> object:
    """The decoded file, its 'annotations' (when a list) as Annotations; anything but an object decoded as is."""
    position = _skip(text, 0)
    if not text.startswith("{", position):
        return json.loads(text)
    content: dict = {}
    position = _skip(text, position + 1)
    if text.startswith("}", position):
        return _end(text, position + 1, content)
    while True:
        if not text.startswith('"', position):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, position)
        key, position = _DECODER.raw_decode(text, position)
        position = _skip(text, position)
        if not text.startswith(":", position):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, position)
        position = _skip(text, position + 1)
        if key == "annotations" and text.startswith("[", position):
            content[key], position = _annotations(text, position)
        else:
            content[key], position = _DECODER.raw_decode(text, position)
        position = _skip(text, position)
        if text.startswith("}", position):
            return _end(text, position + 1, content)
        if not text.startswith(",", position):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
        position = _skip(text, position + 1)


def _annotations(text: str, position: int) -> tuple[Annotations, int]:
    annotations, chunk = Annotations(), []
    position = _skip(text, position + 1)
    if text.startswith("]", position):
        return annotations, position + 1
    while True:
        entry, position = _DECODER.raw_decode(text, position)
        chunk.append(entry)
        if len(chunk) == CHUNK:
            annotations.add(chunk)
            chunk = []
        position = _skip(text, position)
        if text.startswith("]", position):
            annotations.add(chunk)
            return annotations, position + 1
        if not text.startswith(",", position):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
        position = _skip(text, position + 1)


def _skip(text: str, position: int) -> int:
    return _WHITESPACE.match(text, position).end()


def _end(text: str, position: int, content: dict) -> dict:
    if _skip(text, position) != len(text):
        raise json.JSONDecodeError("Extra data", text, _skip(text, position))
    return content


def given_area(area) -> float:
    """An annotation's own `area` (a polygon's or mask's, in pixels), NaN where it is not a positive number."""
    ok = isinstance(area, int | float) and not isinstance(area, bool) and math.isfinite(area) and area > 0
    return float(area) if ok else math.nan

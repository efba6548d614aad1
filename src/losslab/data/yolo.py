"""Ultralytics' YOLO data (`data=yolo`): a data.yaml and one label file per image (losslab.data.yolo_layout finds
them), read into the same records as the COCO reader's, so splits, transforms, loaders and evaluation see no
difference.

- A label line is `class cx cy w h` (a box) or `class x1 y1 x2 y2 x3 y3 ...` (a polygon of 3 points or more, whose
  box is its extent), normalised to the image's width and height; class indices count from 0 (label = index + 1,
  and `category_ids` are the indices). Empty lines are ignored. Any other line is an error naming file:line.
- The dataset has masks (Mask R-CNN, task=segmentation) when any object is a polygon; box objects then get their
  box as mask, with one warning counting them, as for COCO.
- Images without a label file, or with an empty one, are negatives and kept. A label file no image uses is
  counted in one warning. Images whose every object was dropped (degenerate boxes) are dropped: not negatives.
- Coordinates outside [0, 1] by at most 0.01 (Ultralytics' own tolerance) are clipped, with one warning counting
  the lines; further outside is an error naming file:line. A class index outside names is an error naming
  file:line. Boxes left with no width or height are dropped with one warning.
- Sizes are the images as their EXIF orientation turns them (Ultralytics labels them so), read as for COCO.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from losslab.data.boxes import dropped_box_warnings, dropped_boxes, fit_boxes
from losslab.data.coco import CocoDataset
from losslab.data.images import (
    AnnotatedImages,
    Record,
    counted,
    listing,
    probe_images,
)
from losslab.data.split import SPLITS, check_disjoint
from losslab.data.yolo_layout import YoloLayout, label_path, read_layout, stray_labels
from losslab.errors import LosslabError

log = logging.getLogger(__name__)

TOLERANCE = 0.01  # how far past [0, 1] a coordinate is clipped rather than refused (Ultralytics allows 1%)


class YoloDataset(AnnotatedImages):
    """Every image the data.yaml `yaml` names (train, val and test pooled, each image once) with its objects;
    `own_split()` gives the yaml's split of them. Image ids are the images' paths relative to the root."""

    masks = CocoDataset.masks  # the same per-object polygons (or None) as COCO's, decoded the same way

    def __init__(self, yaml: str):
        layout = read_layout(yaml)
        self.source = f"data.yaml={yaml}"
        paths = sorted({path for split in SPLITS for path in layout.images[split]})
        labels = [label_path(path) for path in paths]
        parsed = read_labels(labels, len(layout.classes))
        files = probe_images(paths, [None] * len(paths), self.source)
        records, dropped = [], _Dropped()
        self.segmentations: list[list] = []  # per record, per object: [polygon as a float array] or None
        for path, lines, file in zip(paths, parsed, files, strict=True):
            xyxy, polygons = _pixels(lines, file.width, file.height)
            boxes, valid = fit_boxes(xyxy, file.width, file.height)
            dropped.count(xyxy, boxes, valid, [line.where for line in lines])
            if lines and not valid.any():
                dropped.images += 1
                continue
            image_id = _image_id(path, layout.root)
            labels_of = np.array([line.index + 1 for line in lines], dtype=np.int64)[valid]
            records.append(Record(image_id, len(records), file, image_id, boxes[valid], labels_of))
            self.segmentations.append([polygon for polygon, ok in zip(polygons, valid, strict=True) if ok])
        super().__init__(records, layout.classes, list(range(len(layout.classes))))
        self.split_of = {split: [_image_id(path, layout.root) for path in layout.images[split]] for split in SPLITS}
        boxes_only = [len(image) - sum(p is not None for p in image) for image in self.segmentations]
        self.has_masks = sum(boxes_only) < sum(len(image) for image in self.segmentations)
        dropped.report(self.source, sum(boxes_only) if self.has_masks else 0, sum(line.clipped for image in parsed
                                                                                    for line in image))
        _warn_stray(stray_labels(labels), self.source)
        _log_summary(layout, records, [not path.is_file() for path in labels], dropped.images)

    def own_split(self) -> dict[str, list]:
        """The yaml's train/val/test image ids (split=predefined); a LosslabError when an image is in two splits or
        train or val is empty."""
        kept = set(self.image_ids)
        split = {name: [image_id for image_id in ids if image_id in kept] for name, ids in self.split_of.items()}
        check_disjoint(split, self.source)
        empty = [name for name in ("train", "val") if not split[name]]
        if empty:
            raise LosslabError(f"{self.source} gives no {' and no '.join(empty)} images; split=predefined uses its "
                               "train/val(/test) entries as the split. Add the missing entry, or pool the images and "
                               "split them by ratios with split=random.")
        return split


def _image_id(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


# ---------------------------------------------------------------------------------------------- label files


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
        if not all(math.isfinite(v) for v in values) or not values[0].is_integer() or not (
                count == 4 or (count >= 6 and count % 2 == 0)):
            problems.malformed.append(f"{where} ({line.strip()[:60]!r})")
            continue
        index, coordinates = int(values[0]), values[1:]
        if not 0 <= index < num_classes:
            problems.classes.append(f"{where} (class {index})")
        elif min(coordinates) < -TOLERANCE or max(coordinates) > 1 + TOLERANCE:
            problems.outside.append(f"{where} ({min(coordinates):g}..{max(coordinates):g})")
        else:
            clipped = [min(max(value, 0.0), 1.0) for value in coordinates]
            lines.append(LabelLine(index, clipped, where, clipped != coordinates))
    return lines


def _pixels(lines: list[LabelLine], width: int, height: int) -> tuple[np.ndarray, list]:
    """The XYXY pixel boxes of an image's objects and their polygons in pixels (None for box objects)."""
    boxes, polygons = [], []
    for line in lines:
        values = np.asarray(line.coordinates, dtype=np.float64)
        if line.is_polygon:
            points = values.reshape(-1, 2) * [width, height]
            boxes.append([*points.min(axis=0), *points.max(axis=0)])
            polygons.append([points.ravel()])
        else:
            cx, cy, w, h = values * [width, height, width, height]
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            polygons.append(None)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), polygons


# ---------------------------------------------------------------------------------------------- reports


class _Dropped:
    """What loading clipped or left out, reported once per dataset."""

    def __init__(self):
        self.clipped = 0  # boxes clipped to the image edge
        self.nonfinite: list[str] = []
        self.degenerate: list[str] = []
        self.images = 0  # images whose every object was left out

    def count(self, given: np.ndarray, boxes: np.ndarray, valid: np.ndarray, names: list[str]) -> None:
        self.clipped += int(((boxes != given.astype(np.float32)).any(axis=1) & valid).sum())
        nonfinite, degenerate = dropped_boxes(given, valid, names)
        self.nonfinite += nonfinite
        self.degenerate += degenerate

    def report(self, source: str, boxes_as_masks: int, clipped_lines: int) -> None:
        for warning in dropped_box_warnings(self.nonfinite, self.degenerate):
            log.warning("%s: %s", source, warning)
        if clipped_lines:
            log.warning("%s: %d label line(s) have coordinates outside [0, 1] by at most %g; clipped to the image",
                        source, clipped_lines, TOLERANCE)
        if boxes_as_masks:
            log.warning("%s: %d object(s) are boxes (`class cx cy w h`) while others are polygons; their box is used "
                        "as their mask", source, boxes_as_masks)
        if self.clipped:
            log.info("%s: %d box(es) clipped to the image edge", source, self.clipped)


def _warn_stray(stray: list[Path], source: str) -> None:
    if stray:
        log.warning("%s: %d label file(s) have no image and are not read (%s)", source, len(stray),
                    listing([str(path) for path in stray]))


def _log_summary(layout: YoloLayout, records: list[Record], unlabelled: list[bool], dropped: int) -> None:
    negatives = sum(len(record.labels) == 0 for record in records)
    per_split = ", ".join(f"{split} {len(layout.images[split])}" for split in SPLITS if layout.images[split])
    log.info("%s: %s (%s; %d without objects, %d of them without a label file)%s", layout.yaml,
             counted(len(records), "image"), per_split, negatives, sum(unlabelled),
             f", {dropped} whose every object is a degenerate box left out" if dropped else "")

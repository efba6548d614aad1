"""The checked index of a YOLO dataset: what YoloDataset needs, in a few flat arrays (`YoloIndex`), built from the
label files and the image headers once (`build_yolo_index`) and cached between runs (losslab.data.index_cache).

Flat arrays rather than a Record per image: a cached load of 100k images then reads a few arrays instead of making
and pickling 100k objects. The objects of record r are `starts[r]:starts[r + 1]`; object m's polygon, in pixels, is
`coords[coord_starts[m]:coord_starts[m + 1]]`, empty for a box object (its box is then its mask).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from losslab.data.boxes import dropped_box_warnings, dropped_boxes, fit_boxes
from losslab.data.images import ImageFile, Record, counted, listing, probe_images
from losslab.data.split import SPLITS
from losslab.data.yolo_labels import TOLERANCE, LabelLine, read_labels
from losslab.data.yolo_layout import YoloLayout, stray_labels

ARRAYS = ("sizes", "exif", "starts", "boxes", "labels", "coord_starts", "coords")


@dataclass
class YoloIndex:
    """The images kept for training, their objects and polygons, the yaml's split and what loading has to say."""

    names: list[str]  # per record: the image's path relative to the root, its id (absolute when outside the root)
    sizes: np.ndarray  # int64 R×2: width and height as viewed (EXIF-turned)
    exif: np.ndarray  # bool R: the file must be EXIF-turned when read
    starts: np.ndarray  # int64 R+1: the objects of each record
    boxes: np.ndarray  # float32 M×4: XYXY in pixel edges, clipped to the image
    labels: np.ndarray  # int64 M: class index + 1
    coord_starts: np.ndarray  # int64 M+1: the polygon of each object (none for a box)
    coords: np.ndarray  # float64: x1, y1, x2, y2, ... of every polygon, in pixels
    has_masks: bool  # some object is a polygon (box objects then get their box as mask)
    split_of: dict[str, list[str]]  # the yaml's train/val/test image ids, images dropped while loading included
    notes: list[tuple[int, str]]  # (logging level, message): what loading reports, cached or not

    def parts(self) -> tuple[dict[str, np.ndarray], dict]:
        """The index as named arrays and JSON-able values, as the cache stores it."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ARRAYS}
        return {name: getattr(self, name) for name in ARRAYS}, values

    @classmethod
    def from_parts(cls, arrays: dict[str, np.ndarray], values: dict) -> YoloIndex:
        return cls(**arrays, **{**values, "notes": [tuple(note) for note in values["notes"]]})

    def record(self, root: Path, index: int) -> Record:
        """Record `index`, its file below `root`, its boxes and labels views of the index's arrays."""
        start, end = self.starts[index:index + 2].tolist()
        width, height = self.sizes[index].tolist()
        name = self.names[index]
        file = ImageFile(root / name, width, height, bool(self.exif[index]))  # an absolute name stays as it is
        return Record(name, index, file, name, self.boxes[start:end], self.labels[start:end])

    def segmentations(self, index: int) -> list:
        """Record `index`'s objects, each as [its polygon (a float array)], or None for a box."""
        first, last = self.starts[index:index + 2].tolist()
        bounds = self.coord_starts[first:last + 1].tolist()
        return [[self.coords[start:end]] if end > start else None
                for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def build_yolo_index(layout: YoloLayout, paths: list[Path], label_files: list[Path], source: str) -> YoloIndex:
    """Read and check the label file (`label_files`) and the header of every image (`paths`, the layout's images
    once each): the index of what to train on. `source` names the dataset in messages."""
    parsed = read_labels(label_files, len(layout.classes))
    files = probe_images(paths, [None] * len(paths), source)
    kept, boxes, labels, polygons, dropped = [], [], [], [], _Dropped()
    for path, lines, file in zip(paths, parsed, files, strict=True):
        xyxy, shapes = _pixels(lines, file.width, file.height)
        fitted, valid = fit_boxes(xyxy, file.width, file.height)
        dropped.count(xyxy, fitted, valid, [line.where for line in lines])
        if lines and not valid.any():
            dropped.images += 1
            continue
        kept.append((path, file))
        boxes.append(fitted[valid])
        labels.append(np.array([line.index + 1 for line in lines], dtype=np.int64)[valid])
        polygons += [shape for shape, ok in zip(shapes, valid.tolist(), strict=True) if ok]
    ids = {path: _image_id(path, layout.root) for path in paths}
    lengths = [0 if shape is None else len(shape) for shape in polygons]
    has_masks = any(lengths)
    index = YoloIndex(
        names=[ids[path] for path, _ in kept],
        sizes=np.array([(file.width, file.height) for _, file in kept], dtype=np.int64).reshape(-1, 2),
        exif=np.array([file.exif_transpose for _, file in kept], dtype=bool),
        starts=np.concatenate([[0], np.cumsum([len(objects) for objects in labels])]).astype(np.int64),
        boxes=np.concatenate([np.zeros((0, 4), dtype=np.float32), *boxes]),
        labels=np.concatenate([np.zeros(0, dtype=np.int64), *labels]),
        coord_starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        coords=np.concatenate([np.zeros(0), *(shape for shape in polygons if shape is not None)]),
        has_masks=has_masks, split_of={split: [ids[path] for path in layout.images[split]] for split in SPLITS},
        notes=dropped.notes(source, lengths.count(0) if has_masks else 0,
                            sum(line.clipped for lines in parsed for line in lines)))
    index.notes += _stray_notes(stray_labels(label_files), source)
    index.notes.append(_summary(layout, index, sum(not path.is_file() for path in label_files), dropped.images))
    return index


def _image_id(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def _pixels(lines: list[LabelLine], width: int, height: int) -> tuple[np.ndarray, list]:
    """The XYXY pixel boxes of an image's objects and their polygons in pixels (None for box objects)."""
    boxes, polygons = [], []
    for line in lines:
        values = np.asarray(line.coordinates, dtype=np.float64)
        if line.is_polygon:
            points = values.reshape(-1, 2) * [width, height]
            boxes.append([*points.min(axis=0), *points.max(axis=0)])
            polygons.append(points.ravel())
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

    def notes(self, source: str, boxes_as_masks: int, clipped_lines: int) -> list[tuple[int, str]]:
        notes = [(logging.WARNING, f"{source}: {warning}")
                 for warning in dropped_box_warnings(self.nonfinite, self.degenerate)]
        if clipped_lines:
            notes.append((logging.WARNING, f"{source}: {clipped_lines} label line(s) have coordinates outside [0, 1] "
                          f"by at most {TOLERANCE:g}; clipped to the image"))
        if boxes_as_masks:
            notes.append((logging.WARNING, f"{source}: {boxes_as_masks} object(s) are boxes (`class cx cy w h`) while "
                          "others are polygons; their box is used as their mask"))
        if self.clipped:
            notes.append((logging.INFO, f"{source}: {self.clipped} box(es) clipped to the image edge"))
        return notes


def _stray_notes(stray: list[Path], source: str) -> list[tuple[int, str]]:
    if not stray:
        return []
    return [(logging.WARNING, f"{source}: {len(stray)} label file(s) have no image and are not read "
             f"({listing([str(path) for path in stray])})")]


def _summary(layout: YoloLayout, index: YoloIndex, unlabelled: int, dropped: int) -> tuple[int, str]:
    negatives = int((np.diff(index.starts) == 0).sum())
    per_split = ", ".join(f"{split} {len(layout.images[split])}" for split in SPLITS if layout.images[split])
    return (logging.INFO, f"{layout.yaml}: {counted(len(index.names), 'image')} ({per_split}; {negatives} without "
            f"objects, {unlabelled} of them without a label file)"
            + (f", {dropped} whose every object is a degenerate box left out" if dropped else ""))

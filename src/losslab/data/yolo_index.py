"""The checked index of a YOLO dataset: what YoloDataset needs, in a few flat arrays (`YoloIndex`), built from the
label files and the image headers once (`build_yolo_index`) and cached between runs (losslab.data.index_cache).

Flat arrays rather than a Record per image: a cached load of 100k images then reads a few arrays instead of making
and pickling 100k objects. The objects of record r are `starts[r]:starts[r + 1]`; object m's polygon, in pixels, is
`coords[coord_starts[m]:coord_starts[m + 1]]`, empty for a box object (its box is then its mask).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from losslab.data.boxes import dropped_box_warnings, dropped_boxes, fit_boxes
from losslab.data.images import ImageFile, Record, counted, listing, probe_images
from losslab.data.split import SPLITS
from losslab.data.yolo_labels import TOLERANCE, Labels, read_labels
from losslab.data.yolo_layout import YoloLayout, found_labels

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


def build_yolo_index(layout: YoloLayout, paths: list[str], label_files: list[str], source: str) -> YoloIndex:
    """Read and check the label files (`label_files`) and the header of every image (`paths`, the layout's images
    once each): the index of what to train on. `source` names the dataset in messages."""
    found, stray = found_labels(label_files)
    labels = read_labels([file if file in found else None for file in label_files], len(layout.classes))
    files = probe_images(paths, [None] * len(paths), source)  # any path-like: strings spare a Path per image
    sizes = np.array([(file.width, file.height) for file in files], dtype=np.int64).reshape(-1, 2)
    owner = np.repeat(np.arange(len(paths)), labels.counts)
    objects = _Objects(labels, sizes[owner])
    valid_per_image = np.bincount(owner[objects.valid], minlength=len(paths))
    # An image whose every object was dropped is no negative: it is left out.
    kept = (labels.counts == 0) | (valid_per_image > 0)
    ids = dict(zip(paths, _image_ids(paths, str(layout.root)), strict=True))
    has_masks = bool(objects.polygons[objects.valid].any())
    boxes_as_masks = int((~objects.polygons[objects.valid]).sum()) if has_masks else 0
    index = YoloIndex(
        names=[ids[path] for path, keep in zip(paths, kept.tolist(), strict=True) if keep], sizes=sizes[kept],
        exif=np.array([file.exif_transpose for file in files], dtype=bool).reshape(-1)[kept],
        starts=np.concatenate([[0], np.cumsum(valid_per_image[kept])]).astype(np.int64),
        boxes=objects.boxes[objects.valid], labels=objects.labels[objects.valid],
        coord_starts=np.concatenate([[0], np.cumsum(objects.lengths[objects.valid])]).astype(np.int64),
        coords=objects.coords[np.repeat(objects.valid[objects.polygons], objects.lengths[objects.polygons])],
        has_masks=has_masks, split_of={split: [ids[path] for path in layout.images[split]] for split in SPLITS},
        notes=objects.notes(source, boxes_as_masks))
    index.notes += _stray_notes(stray, source)
    unlabelled = sum(file not in found for file in label_files)
    index.notes.append(_summary(layout, index, unlabelled, int((~kept).sum())))
    return index


def _image_ids(paths: list[str], root: str) -> list[str]:
    """Each path relative to the root (as Path.relative_to gives it), or as it is when outside the root."""
    if root == ".":  # every relative path lies below it
        return list(paths)
    prefix = os.path.join(root, "")
    return [path[len(prefix):] if path.startswith(prefix) else path for path in paths]


class _Objects:
    """Every label line of the dataset at once, in pixels of its image (`sizes`: the width and height of each line's
    image): its box fitted to the image, whether it keeps a positive size, its polygon, and what was dropped."""

    def __init__(self, labels: Labels, sizes: np.ndarray):
        self.polygons = labels.lengths > 4
        self.lengths = np.where(self.polygons, labels.lengths, 0)
        self.labels = labels.classes + 1
        is_polygon_value = np.repeat(self.polygons, labels.lengths)
        box_sizes = sizes[~self.polygons]
        cxcywh = labels.coordinates[~is_polygon_value].reshape(-1, 4) * np.concatenate([box_sizes, box_sizes], axis=1)
        given = np.zeros((len(labels.classes), 4))
        given[~self.polygons] = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2],
                                               axis=1)
        points = np.repeat(sizes[self.polygons], self.lengths[self.polygons] // 2, axis=0)  # per point: (w, h)
        self.coords = labels.coordinates[is_polygon_value] * points.reshape(-1)
        if self.polygons.any():  # a polygon's box is its extent
            first = np.concatenate([[0], np.cumsum(self.lengths[self.polygons])[:-1]]) // 2  # its first point
            xs, ys = self.coords[0::2], self.coords[1::2]
            given[self.polygons] = np.stack([np.minimum.reduceat(xs, first), np.minimum.reduceat(ys, first),
                                             np.maximum.reduceat(xs, first), np.maximum.reduceat(ys, first)], axis=1)
        self.boxes, self.valid = fit_boxes(given, sizes[:, 0], sizes[:, 1])
        self.clipped = int(((self.boxes != given.astype(np.float32)).any(axis=1) & self.valid).sum())
        dropped = np.flatnonzero(~self.valid)  # named in messages: a name for each of 800k lines would cost seconds
        self.nonfinite, self.degenerate = dropped_boxes(given[dropped], self.valid[dropped], labels.where(dropped))
        self.clipped_lines = labels.clipped_lines

    def notes(self, source: str, boxes_as_masks: int) -> list[tuple[int, str]]:
        """What loading clipped or left out, reported once per dataset."""
        notes = [(logging.WARNING, f"{source}: {warning}")
                 for warning in dropped_box_warnings(self.nonfinite, self.degenerate)]
        if self.clipped_lines:
            notes.append((logging.WARNING, f"{source}: {self.clipped_lines} label line(s) have coordinates outside "
                          f"[0, 1] by at most {TOLERANCE:g}; clipped to the image"))
        if boxes_as_masks:
            notes.append((logging.WARNING, f"{source}: {boxes_as_masks} object(s) are boxes (`class cx cy w h`) while "
                          "others are polygons; their box is used as their mask"))
        if self.clipped:
            notes.append((logging.INFO, f"{source}: {self.clipped} box(es) clipped to the image edge"))
        return notes


# ---------------------------------------------------------------------------------------------- reports


def _stray_notes(stray: list[str], source: str) -> list[tuple[int, str]]:
    if not stray:
        return []
    return [(logging.WARNING, f"{source}: {len(stray)} label file(s) have no image and are not read "
             f"({listing(stray)})")]


def _summary(layout: YoloLayout, index: YoloIndex, unlabelled: int, dropped: int) -> tuple[int, str]:
    negatives = int((np.diff(index.starts) == 0).sum())
    per_split = ", ".join(f"{split} {len(layout.images[split])}" for split in SPLITS if layout.images[split])
    return (logging.INFO, f"{layout.yaml}: {counted(len(index.names), 'image')} ({per_split}; {negatives} without "
            f"objects, {unlabelled} of them without a label file)"
            + (f", {dropped} whose every object is a degenerate box left out" if dropped else ""))

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

The label files and every image header are checked once; the checked index (losslab.data.yolo_index) is cached, so a
later run or sweep job over the same unchanged files starts at once (`data.cache`, see losslab.data.index_cache).
Its inputs are the data.yaml, its list files, and the folders of the images and of their label files.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from losslab.data import boxes, images, index_cache, yolo_index, yolo_labels, yolo_layout
from losslab.data.coco import CocoDataset
from losslab.data.images import AnnotatedImages
from losslab.data.split import SPLITS, check_disjoint
from losslab.data.yolo_index import YoloIndex, build_yolo_index
from losslab.data.yolo_layout import in_path_order, label_file, read_layout
from losslab.errors import LosslabError

log = logging.getLogger(__name__)


class YoloDataset(AnnotatedImages):
    """Every image the data.yaml `yaml` names (train, val and test pooled, each image once) with its objects;
    `own_split()` gives the yaml's split of them. Image ids are the images' paths relative to the root. The checked
    index is cached between runs unless `cache` is false."""

    masks = CocoDataset.masks  # the same per-object polygons (or None) as COCO's, decoded the same way

    def __init__(self, yaml: str, cache: bool = True):
        layout = read_layout(yaml)
        self.source = f"data.yaml={yaml}"
        paths = in_path_order({path for split in SPLITS for path in layout.images[split]})
        # The layout (read every time: it is a listing) names the images; the options hold it, so another set of
        # images is another index even where the state of the inputs could not tell.
        options = {"yaml": yaml, "resolved": str(layout.yaml.resolve()),
                   "images": hashlib.sha256("\n".join(paths).encode()).hexdigest()}
        self.index = YoloIndex.from_parts(*index_cache.cached_index(
            "yolo", options, files=[layout.yaml, *layout.lists], folders=_folders(paths), code=CODE, enabled=cache,
            build=lambda: build_yolo_index(layout, paths, [label_file(path) for path in paths], self.source).parts()))
        for level, message in self.index.notes:
            log.log(level, "%s", message)
        # Records are made when asked for: a Path per image up front would be most of a cached load's time.
        self.records = _OnDemand(len(self.index.names), partial(self.index.record, layout.root))
        self.segmentations = _OnDemand(len(self.index.names), self.index.segmentations)
        self.classes, self.category_ids = layout.classes, list(range(len(layout.classes)))
        self.image_ids, self.file_names = list(self.index.names), list(self.index.names)
        self.split_of = self.index.split_of
        self.has_masks = self.index.has_masks

    def object_labels(self, index: int) -> list[int]:
        start, end = self.index.starts[index:index + 2].tolist()
        return self.index.labels[start:end].tolist()

    def image_labels(self) -> dict[int | str, set[int]]:
        starts, labels = self.index.starts.tolist(), self.index.labels.tolist()
        return {image_id: set(labels[start:end])
                for image_id, start, end in zip(self.image_ids, starts[:-1], starts[1:], strict=True)}

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


def _folders(paths: list[str]) -> list[Path]:
    """The folders an index of `paths` is read from: the images' and their label files' (a folder that does not exist
    yet included: labels added later must refuse the cache), none below another."""
    # Per folder, not per image: the label folder of the images in F is that of any file in F (the rule changes
    # the folders' part of a path only).
    image_folders = {os.path.dirname(path) or "." for path in paths}
    label_folders = {os.path.dirname(label_file(os.path.join(folder, "image.jpg"))) or "." for folder in image_folders}
    return index_cache.outermost(map(Path, image_folders | label_folders))


class _OnDemand(Sequence):
    """`length` items, each made by `make(index)` when asked for (`make` picklable, for DataLoader workers)."""

    def __init__(self, length: int, make: Callable[[int], object]):
        self.length, self.make = length, make

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        if not -self.length <= index < self.length:
            raise IndexError(f"item {index} of {self.length}")
        return self.make(index % self.length)


# The modules whose logic a cached index depends on: a change to any of them makes older caches misses.
CODE = (yolo_index, yolo_labels, yolo_layout, images, boxes, index_cache)

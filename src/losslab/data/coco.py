"""COCO instances data (`data=coco`): an image folder and one annotation file in COCO's JSON format.

How the quirks of real COCO files are handled:

- Category ids need not be contiguous (COCO itself uses 1..90 with gaps): labels are 1..K in the order of
  the ids, `category_ids[label - 1]` maps a label back and `classes` holds the category names.
- A category with id 0 named `_background_`, `background` or `__background__` (labelme's COCO converter writes
  one) is the background, which label 0 already is: it is left out, with its annotations, and one warning.
- `iscrowd=1` regions (one region around many objects) are kept out of the targets, as torchvision's
  reference training does, and so out of the validation mAP's ground truth: a detection on a crowd counts
  as a false positive there, which makes such metrics slightly pessimistic.
- Images the file lists without any annotation are negatives, kept unless `keep_empty` is false. Images
  whose every annotation is unusable (crowd regions, degenerate boxes) are dropped: they are not negatives.
- Boxes ([x, y, width, height]) past the image edge are clipped to it; boxes left with no width or height
  are dropped with one warning counting them.
- Masks come from polygons or RLE (compressed or not) through pycocotools. The dataset has masks when any
  object has a segmentation; objects without one then get their box as mask, with one warning counting them.

The file and every image header are checked once; the checked index (losslab.data.coco_index) is cached, so a later
run or sweep job over the same unchanged files starts at once (`data.cache`, see losslab.data.index_cache).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

from losslab.data import coco_index, coco_structure, images, index_cache, rle
from losslab.data.coco_index import CocoIndex, build_coco_index
from losslab.data.images import AnnotatedImages, Record, existing_file, existing_folder
from losslab.data.rle import pycocotools_rle

log = logging.getLogger(__name__)


class CocoDataset(AnnotatedImages):
    """The images of `images` (a folder) that the COCO instances file `annotations` lists, with their objects.
    Symbolic links leading outside the folder are refused unless `follow_outside_links`; the checked index is
    cached between runs unless `cache` is false."""

    def __init__(self, images: str, annotations: str, keep_empty: bool = True, follow_outside_links: bool = False,
                 cache: bool = True):
        folder = existing_folder(images, "data.images", "the folder holding the images the annotations name")
        path = existing_file(annotations, "data.annotations", "a COCO instances file (JSON)")
        options = {"images": str(folder.resolve()), "annotations": str(path.resolve()), "keep_empty": keep_empty,
                   "follow_outside_links": follow_outside_links}
        self.index = CocoIndex.from_parts(*index_cache.cached_index(
            "coco", options, files=[path], folders=[folder], code=CODE, enabled=cache,
            build=lambda: build_coco_index(folder, path, keep_empty, follow_outside_links).parts()))
        for level, message in self.index.notes:
            log.log(level, "%s", message)
        # Records are made when asked for: a Path per image up front would be most of a cached load's time.
        self.records = _Records(self.index, folder)
        self.classes, self.category_ids = tuple(self.index.classes), list(self.index.category_ids)
        self.left_out = self.index.left_out
        self.image_ids, self.file_names = self.index.image_ids.tolist(), list(self.index.names)
        self.has_masks = self.index.has_masks

    def object_labels(self, index: int) -> list[int]:
        start, end = self.index.starts[index:index + 2].tolist()
        return self.index.labels[start:end].tolist()

    def image_labels(self) -> dict[int | str, set[int]]:
        starts = self.index.starts.tolist()
        labels = self.index.labels.tolist()
        return {image_id: set(labels[start:end])
                for image_id, start, end in zip(self.image_ids, starts[:-1], starts[1:], strict=True)}

    @property
    def segmentations(self) -> _Segmentations:
        """Per record, per object: its polygons (float arrays), its RLE, or None (its box is its mask)."""
        return _Segmentations(self.index)

    def masks(self, index: int) -> torch.Tensor:
        record = self.records[index]
        height, width = record.file.height, record.file.width
        masks = np.zeros((len(record.boxes), height, width), dtype=np.uint8)
        segmentations = self.segmentations[index]
        with_rle = [i for i, segmentation in enumerate(segmentations) if segmentation is not None]
        if with_rle:  # one decode call for all of them: it is the costly part of loading an image
            decoded = mask_utils.decode([pycocotools_rle(segmentations[i], height, width) for i in with_rle])
            masks[with_rle] = decoded.transpose(2, 0, 1)
        for i in sorted(set(range(len(masks))) - set(with_rle)):
            x0, y0 = np.floor(record.boxes[i, :2]).astype(int)
            x1, y1 = np.ceil(record.boxes[i, 2:]).astype(int)
            masks[i, y0:y1, x0:x1] = 1
        return torch.from_numpy(masks)


class _Records(Sequence):
    """The index's images as Records, each made when asked for."""

    def __init__(self, index: CocoIndex, folder: Path):
        self.index, self.folder = index, folder

    def __len__(self) -> int:
        return len(self.index.names)

    def __getitem__(self, index: int) -> Record:
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        return self.index.record(self.folder, index % len(self))


class _Segmentations(Sequence):
    """The index's segmentations as a list per record, made when asked for (readers whose `masks` is CocoDataset's,
    data=yolo's, hold such a list of lists)."""

    def __init__(self, index: CocoIndex):
        self.index = index

    def __len__(self) -> int:
        return len(self.index.names)

    def __getitem__(self, record: int) -> list:
        first, last = self.index.starts[record:record + 2].tolist()
        return [self.index.segmentation(obj) for obj in range(first, last)]


# The modules whose logic a cached index depends on: a change to any of them makes older caches misses.
CODE = (coco_index, coco_structure, images, rle, index_cache)

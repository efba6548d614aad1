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
- An object's own `area` (a polygon's, not its box's) travels in its target as `area` (NaN where the file gives none),
  so the ground truth of evaluation sorts it into COCO's small, medium and large objects as the file does.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

from losslab.data.coco_structure import (
    annotated_size,
    annotation_name,
    check_structure,
    raise_if,
    without_background,
)
from losslab.data.images import (
    AnnotatedImages,
    Record,
    counted,
    crosses_edge,
    dropped_box_warnings,
    dropped_boxes,
    existing_file,
    existing_folder,
    fit_boxes,
    listing,
    probe_images,
    resolve_files,
)
from losslab.errors import LosslabError

log = logging.getLogger(__name__)


class CocoDataset(AnnotatedImages):
    """The images of `images` (a folder) that the COCO instances file `annotations` lists, with their objects.
    Symbolic links leading outside the folder are refused unless `follow_outside_links`."""

    def __init__(self, images: str, annotations: str, keep_empty: bool = True, follow_outside_links: bool = False):
        folder = existing_folder(images, "data.images", "the folder holding the images the annotations name")
        path = existing_file(annotations, "data.annotations", "a COCO instances file (JSON)")
        content = read_json(path)
        check_structure(content, path)
        categories, annotations = without_background(content["categories"], content["annotations"], path)
        categories = sorted(categories, key=lambda category: category["id"])
        by_image = defaultdict(list)
        for annotation in annotations:
            by_image[annotation["image_id"]].append(annotation)
        images_used = [image for image in content["images"] if keep_empty or by_image[image["id"]]]
        names = [image["file_name"] for image in images_used]
        files = probe_images(resolve_files(folder, names, str(path), follow_outside_links),
                             [annotated_size(image) for image in images_used], str(path))
        label_of = {category["id"]: label for label, category in enumerate(categories, start=1)}
        dropped = _Dropped()
        records, without = [], []  # the objects without a usable segmentation
        self.segmentations: list[list] = []  # per record, per object: polygons, an RLE, or None
        for image, file in zip(images_used, files, strict=True):
            objects = _objects(by_image[image["id"]], file.width, file.height, dropped)
            if by_image[image["id"]] and not objects:
                dropped.images += 1
                continue
            boxes = np.array([box for _, box in objects], dtype=np.float32).reshape(-1, 4)
            labels = np.array([label_of[annotation["category_id"]] for annotation, _ in objects], dtype=np.int64)
            areas = np.array([given_area(annotation) for annotation, _ in objects], dtype=np.float32)
            records.append(Record(image["id"], image["id"], file, image["file_name"], boxes, labels, areas))
            self.segmentations.append(compact_segmentations(objects, file.width, file.height, path))
            without += [f"annotation {annotation_name(annotation)}"
                        for (annotation, _), segmentation in zip(objects, self.segmentations[-1], strict=True)
                        if segmentation is None]
        super().__init__(records, tuple(str(category["name"]) for category in categories),
                         [category["id"] for category in categories])
        self.has_masks = len(without) < sum(len(image) for image in self.segmentations)
        dropped.report(path, without if self.has_masks else [])
        _log_summary(path, records, len(content["images"]) - len(images_used), dropped.images)

    def masks(self, index: int) -> torch.Tensor:
        record = self.records[index]
        height, width = record.file.height, record.file.width
        masks = np.zeros((len(record.boxes), height, width), dtype=np.uint8)
        segmentations = self.segmentations[index]
        with_rle = [i for i, segmentation in enumerate(segmentations) if segmentation is not None]
        if with_rle:  # one decode call for all of them: it is the costly part of loading an image
            decoded = mask_utils.decode([_rle(segmentations[i], height, width) for i in with_rle])
            masks[with_rle] = decoded.transpose(2, 0, 1)
        for i in sorted(set(range(len(masks))) - set(with_rle)):
            x0, y0 = np.floor(record.boxes[i, :2]).astype(int)
            x1, y1 = np.ceil(record.boxes[i, 2:]).astype(int)
            masks[i, y0:y1, x0:x1] = 1
        return torch.from_numpy(masks)


def read_json(path: Path) -> dict:
    """The parsed JSON file, or a LosslabError saying where it is broken."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise LosslabError(f"data.annotations={path} is not valid JSON: {error.msg} at line {error.lineno}, "
                           f"column {error.colno}. Fix the file (or re-export it from the annotation tool).") from error
    except UnicodeDecodeError as error:
        raise LosslabError(f"data.annotations={path} is not a UTF-8 text file ({error.reason} at byte "
                           f"{error.start}); expected a COCO instances file (JSON).") from error


# ---------------------------------------------------------------------------------------------- objects


class _Dropped:
    """What loading left out, reported once per dataset."""

    def __init__(self):
        self.crowd = 0
        self.clipped = 0
        self.nonfinite: list[str] = []  # annotation names
        self.degenerate: list[str] = []
        self.images = 0  # images whose every annotation was left out

    def report(self, path: Path, boxes_as_masks: list[str]) -> None:
        for warning in dropped_box_warnings(self.nonfinite, self.degenerate):
            log.warning("%s: %s", path, warning)
        if boxes_as_masks:
            log.warning("%s: %d object(s) have no usable segmentation (none, or no polygon of 3 points or more) while "
                        "others have one; their box is used as their mask (%s)", path, len(boxes_as_masks),
                        listing(boxes_as_masks))
        if self.clipped or self.crowd:
            log.info("%s: %d box(es) clipped to the image edge, %d crowd region(s) left out of the targets",
                     path, self.clipped, self.crowd)


def given_area(annotation: dict) -> float:
    """The annotation's own `area` (a polygon's or mask's, in pixels), NaN where it gives no positive number."""
    area = annotation.get("area")
    ok = isinstance(area, int | float) and not isinstance(area, bool) and math.isfinite(area) and area > 0
    return float(area) if ok else math.nan


def _objects(annotations: list[dict], width: int, height: int, dropped: _Dropped) -> list[tuple[dict, list[float]]]:
    """The training objects among one image's annotations, each with its XYXY box clipped to the image."""
    kept = [a for a in annotations if not a.get("iscrowd", 0)]
    dropped.crowd += len(annotations) - len(kept)
    if not kept:
        return []
    xywh = np.array([a["bbox"] for a in kept], dtype=np.float64)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    boxes, valid = fit_boxes(xyxy, width, height)
    dropped.clipped += int((crosses_edge(xyxy, width, height) & valid).sum())
    nonfinite, degenerate = dropped_boxes(xyxy, valid, [annotation_name(a) for a in kept])
    dropped.nonfinite += nonfinite
    dropped.degenerate += degenerate
    return [(a, box.tolist()) for a, box, ok in zip(kept, boxes, valid, strict=True) if ok]


def compact_segmentations(objects: list[tuple[dict, list[float]]], width: int, height: int, path: Path) -> list:
    """Each object's segmentation as polygons (float arrays of at least three points), an RLE, or None.

    Polygons become arrays so that DataLoader workers share a few large objects rather than touch millions of
    small ones. RLEs must be of the image's size with readable counts, and polygons must hold numbers.
    """
    compact, problems = [], []
    for annotation, _ in objects:
        segmentation = annotation.get("segmentation")
        name = f"annotation {annotation_name(annotation)}"
        if isinstance(segmentation, dict):
            problems += _rle_problems(name, segmentation, height, width)
            compact.append(segmentation)
        elif isinstance(segmentation, list):
            try:
                polygons = [np.asarray(p, dtype=np.float64) for p in segmentation
                            if isinstance(p, list) and len(p) >= 6]
            except (TypeError, ValueError):
                problems.append(f"{name}: polygon coordinates must be numbers")
                polygons = []
            compact.append(polygons or None)  # no polygon of three points or more: no mask
        else:
            compact.append(None)
    raise_if(problems, path, "a segmentation is a list of polygons [x1, y1, x2, y2, ...] or an RLE "
              "{'size': [height, width], 'counts': ...} of its image's size")
    return compact


def _rle_problems(name: str, rle: dict, height: int, width: int) -> list[str]:
    if list(rle.get("size", [])) != [height, width] or not isinstance(rle.get("counts"), list | str):
        return [f"{name}: RLE size {rle.get('size')} for a {height}x{width} (height x width) image"]
    counts = rle["counts"]
    if isinstance(counts, list) and not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        return [f"{name}: RLE counts must be whole numbers"]
    runs = counts if isinstance(counts, list) else compressed_counts(counts)
    if sum(runs) != height * width or min(runs, default=0) < 0:
        return [f"{name}: RLE counts cover {sum(runs)} pixels{' (some negative)' if min(runs, default=0) < 0 else ''}"
                f", not the {height}x{width} = {height * width} of its image"]
    return []


def compressed_counts(counts: str) -> list[int]:
    """The run lengths a compressed RLE string encodes (COCO maskApi's rleFrString, without decoding the mask).

    Each number is written in groups of 5 bits, one character (48 + group) each: bit 0x20 says that another
    group follows, bit 0x10 of the last group is the sign. From the fourth number on, each is stored as its
    difference to the number two before it.
    """
    runs: list[int] = []
    value = shift = 0
    for character in counts.encode("ascii", errors="replace"):
        group = character - 48
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value |= -1 << shift
        runs.append(value + runs[-2] if len(runs) > 2 else value)
        value = shift = 0
    return runs


def _rle(segmentation: dict | list, height: int, width: int) -> dict:
    """pycocotools' RLE of polygons or of an RLE (uncompressed counts are a list, compressed ones a string)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def _log_summary(path: Path, records: list[Record], left_out: int, dropped: int) -> None:
    negatives = sum(len(record.labels) == 0 for record in records)
    log.info("%s: %s (%d without objects)%s%s", path, counted(len(records), "image"), negatives,
             f", {left_out} without annotations left out (data.keep_empty=false)" if left_out else "",
             f", {dropped} whose every annotation is a crowd region or a degenerate box left out" if dropped else "")

"""The checked index of a COCO instances file: what CocoDataset needs, in a few flat arrays (`CocoIndex`), built from
the file and the image headers once (`build_coco_index`) and cached between runs (losslab.data.index_cache).

Flat arrays rather than an object per annotation: a file of 800k polygons would otherwise hold millions of small
Python objects (slow to build, to cache and to share with DataLoader workers). The objects of record r are
`starts[r]:starts[r + 1]`; the polygons of object m are `polygon_starts[m]:polygon_starts[m + 1]`, and the
coordinates of polygon p `coord_starts[p]:coord_starts[p + 1]` of `coords`. RLE masks (rare) are kept as given.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from losslab.data.coco_structure import (
    annotated_size,
    annotation_name,
    check_structure,
    raise_if,
    without_background,
)
from losslab.data.images import (
    ImageFile,
    Record,
    counted,
    dropped_box_warnings,
    dropped_boxes,
    fit_boxes,
    listing,
    probe_images,
    resolve_files,
)
from losslab.data.rle import rle_problems
from losslab.errors import LosslabError

ARRAYS = ("image_ids", "sizes", "exif", "starts", "boxes", "labels", "polygon_starts", "coord_starts", "coords")


@dataclass
class CocoIndex:
    """The images kept for training, their objects and masks, the classes and what loading has to say."""

    names: list[str]  # per record: the file name the annotations give
    image_ids: np.ndarray  # int64 R: COCO's image id
    sizes: np.ndarray  # int64 R×2: width and height as the annotations see the image (EXIF-turned)
    exif: np.ndarray  # bool R: the file must be EXIF-turned when read
    starts: np.ndarray  # int64 R+1: the objects of each record
    boxes: np.ndarray  # float32 M×4: XYXY in pixel edges, clipped to the image
    labels: np.ndarray  # int64 M: 1..K
    polygon_starts: np.ndarray  # int64 M+1
    coord_starts: np.ndarray  # int64 P+1
    coords: np.ndarray  # float64: x1, y1, x2, y2, ... of every polygon
    rles: dict[int, dict]  # object index -> its RLE (pycocotools' dict)
    classes: list[str]
    category_ids: list[int]
    has_masks: bool  # some object has a polygon or an RLE (the others then get their box as mask)
    crowds: dict[int, list]  # image id -> its crowd regions' segmentations (task=segmentation ignores those pixels)
    notes: list[tuple[int, str]]  # (logging level, message): what loading reports, cached or not

    def parts(self) -> tuple[dict[str, np.ndarray], dict]:
        """The index as named arrays and JSON-able values, as the cache stores it."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ARRAYS}
        values["rles"] = list(self.rles.items())
        values["crowds"] = list(self.crowds.items())
        return {name: getattr(self, name) for name in ARRAYS}, values

    @classmethod
    def from_parts(cls, arrays: dict[str, np.ndarray], values: dict) -> CocoIndex:
        return cls(**arrays, **{**values, "rles": dict(values["rles"]), "crowds": dict(values["crowds"]),
                                "notes": [tuple(note) for note in values["notes"]]})

    def records(self, folder: Path) -> list[Record]:
        """One Record per image, its boxes and labels views of the index's arrays."""
        starts = self.starts.tolist()
        return [Record(image_id, image_id, ImageFile(folder / name, width, height, bool(turn)), name,
                       self.boxes[start:end], self.labels[start:end])
                for image_id, name, (width, height), turn, start, end
                in zip(self.image_ids.tolist(), self.names, self.sizes.tolist(), self.exif.tolist(), starts[:-1],
                       starts[1:], strict=True)]

    def segmentation(self, obj: int) -> list[np.ndarray] | dict | None:
        """Object `obj`'s polygons (float arrays), its RLE, or None when it has neither (its box is its mask)."""
        if obj in self.rles:
            return self.rles[obj]
        first, last = self.polygon_starts[obj:obj + 2].tolist()
        bounds = self.coord_starts[first:last + 1].tolist()
        return [self.coords[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)] or None


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


def build_coco_index(folder: Path, path: Path, keep_empty: bool, follow_outside_links: bool) -> CocoIndex:
    """Read and check the annotation file `path` and every image it uses in `folder`: the index of what to train on."""
    content = read_json(path)
    check_structure(content, path)
    categories, annotations, notes = without_background(content["categories"], content["annotations"], path)
    categories = sorted(categories, key=lambda category: category["id"])
    annotated = {annotation["image_id"] for annotation in annotations}
    images = [image for image in content["images"] if keep_empty or image["id"] in annotated]
    files = probe_images(resolve_files(folder, [image["file_name"] for image in images], str(path),
                                       follow_outside_links),
                         [annotated_size(image) for image in images], str(path))
    sizes = np.array([(file.width, file.height) for file in files], dtype=np.int64).reshape(-1, 2)
    objects = _Objects(annotations, [image["id"] for image in images], sizes, [c["id"] for c in categories])
    kept = objects.kept_records
    index = CocoIndex(
        names=[image["file_name"] for image, keep in zip(images, kept.tolist(), strict=True) if keep],
        image_ids=np.array([image["id"] for image in images], dtype=np.int64)[kept], sizes=sizes[kept],
        exif=np.array([file.exif_transpose for file in files], dtype=bool)[kept], starts=objects.starts,
        boxes=objects.boxes, labels=objects.labels, **_segmentations(annotations, objects, path),
        classes=[str(category["name"]) for category in categories], category_ids=[c["id"] for c in categories],
        crowds=_crowds(content["annotations"]), notes=[(logging.WARNING, note) for note in notes])
    index.notes += objects.notes(path, index.has_masks)
    negatives = int((np.diff(index.starts) == 0).sum())
    left_out, dropped = len(content["images"]) - len(images), int((~kept).sum())
    index.notes.append((logging.INFO, f"{path}: {counted(len(index.names), 'image')} ({negatives} without objects)"
                        + (f", {left_out} without annotations left out (data.keep_empty=false)" if left_out else "")
                        + (f", {dropped} whose every annotation is a crowd region or a degenerate box left out"
                           if dropped else "")))
    return index


class _Objects:
    """The training objects of every image at once: crowd regions left out, boxes clipped, degenerate ones dropped,
    and images whose every annotation was left out dropped (they are not negatives)."""

    def __init__(self, annotations: list[dict], image_ids: list[int], sizes: np.ndarray, category_ids: list[int]):
        position = {image_id: i for i, image_id in enumerate(image_ids)}
        owner = np.array([position[a["image_id"]] for a in annotations], dtype=np.int64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
        order = np.argsort(owner, kind="stable")  # grouped by image, in the file's order within each
        candidates = order[~crowd[order]]
        xywh = np.array([annotations[i]["bbox"] for i in candidates.tolist()], dtype=np.float64).reshape(-1, 4)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        boxes, valid = fit_boxes(xyxy, sizes[owner[candidates], 0], sizes[owner[candidates], 1])
        self.crowd = int(crowd.sum())
        self.clipped = int(((boxes != xyxy).any(axis=1) & valid).sum())
        dropped = candidates[~valid].tolist()
        self.nonfinite, self.degenerate = dropped_boxes(xyxy[~valid], valid[~valid],
                                                        [annotation_name(annotations[i]) for i in dropped])
        self.kept = candidates[valid]  # annotation indices of the objects, in the index's order
        self.boxes = boxes[valid]
        categories = np.array([a["category_id"] for a in annotations], dtype=np.int64)[self.kept]
        self.labels = np.searchsorted(np.array(category_ids, dtype=np.int64), categories).astype(np.int64) + 1
        counts = np.bincount(owner[self.kept], minlength=len(image_ids))
        self.kept_records = (counts > 0) | (np.bincount(owner, minlength=len(image_ids)) == 0)
        self.starts = np.concatenate([[0], np.cumsum(counts[self.kept_records])]).astype(np.int64)
        self.image_sizes = sizes[owner[self.kept]]  # width, height of each object's image
        self.without_mask: list[str] = []  # filled by _segmentations

    def notes(self, path: Path, has_masks: bool) -> list[tuple[int, str]]:
        notes = [(logging.WARNING, f"{path}: {warning}")
                 for warning in dropped_box_warnings(self.nonfinite, self.degenerate)]
        if has_masks and self.without_mask:
            notes.append((logging.WARNING, f"{path}: {len(self.without_mask)} object(s) have no usable segmentation "
                          "(none, or no polygon of 3 points or more) while others have one; their box is used as "
                          f"their mask ({listing(self.without_mask)})"))
        if self.clipped or self.crowd:
            notes.append((logging.INFO, f"{path}: {self.clipped} box(es) clipped to the image edge, {self.crowd} crowd "
                          "region(s) left out of the targets"))
        return notes


def _segmentations(annotations: list[dict], objects: _Objects, path: Path) -> dict:
    """The index's mask fields: every object's polygons (flat float arrays of at least three points) or RLE.

    RLEs must be of the image's size with readable counts, and polygons must hold numbers.
    """
    polygon_counts, lengths, coords, rles, problems = [], [], [], {}, []
    for obj, (i, (width, height)) in enumerate(zip(objects.kept.tolist(), objects.image_sizes.tolist(), strict=True)):
        segmentation = annotations[i].get("segmentation")
        polygons = []
        if isinstance(segmentation, dict):
            problems += rle_problems(f"annotation {annotation_name(annotations[i])}", segmentation, height, width)
            rles[obj] = segmentation
        elif isinstance(segmentation, list):
            polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
            for polygon in polygons:
                coords += polygon
                lengths.append(len(polygon))
        if not polygons and obj not in rles:
            objects.without_mask.append(f"annotation {annotation_name(annotations[i])}")
        polygon_counts.append(len(polygons))
    try:
        flat = np.array(coords, dtype=np.float64)
    except (TypeError, ValueError):
        flat = None
    if flat is None or flat.ndim != 1:
        problems += [f"annotation {annotation_name(annotations[i])}: polygon coordinates must be numbers"
                     for i in objects.kept.tolist() if not _numeric_polygons(annotations[i]["segmentation"])]
    raise_if(problems, path, "a segmentation is a list of polygons [x1, y1, x2, y2, ...] or an RLE "
             "{'size': [height, width], 'counts': ...} of its image's size")
    return {"polygon_starts": np.concatenate([[0], np.cumsum(polygon_counts, dtype=np.int64)]).astype(np.int64),
            "coord_starts": np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
            "coords": flat, "rles": rles, "has_masks": len(objects.without_mask) < len(objects.kept)}


def _numeric_polygons(segmentation: object) -> bool:
    if not isinstance(segmentation, list):
        return True
    try:
        return all(np.asarray(p, dtype=np.float64).ndim == 1 for p in segmentation if isinstance(p, list)
                   and len(p) >= 6)
    except (TypeError, ValueError):
        return False


def _crowds(annotations: list[dict]) -> dict[int, list]:
    crowds: dict[int, list] = {}
    for annotation in annotations:
        if annotation.get("iscrowd") and annotation.get("segmentation"):
            crowds.setdefault(annotation["image_id"], []).append(annotation["segmentation"])
    return crowds

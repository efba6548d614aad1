"""The checked index of a COCO instances file: what CocoDataset needs, in a few flat arrays (`CocoIndex`), built from
the file and the image headers once (`build_coco_index`) and cached between runs (losslab.data.index_cache).

Flat arrays rather than an object per annotation: a file of 800k polygons would otherwise hold millions of small
Python objects (slow to build, to cache and to share with DataLoader workers). The objects of record r are
`starts[r]:starts[r + 1]`; object m is annotation `objects[m]` of the file, whose polygons are
`polygon_starts[a]:polygon_starts[a + 1]`, and the coordinates of polygon p `coord_starts[p]:coord_starts[p + 1]` of
`coords`. RLE masks (rare) are kept as given.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from losslab.data.boxes import crosses_edge, dropped_box_warnings, dropped_boxes, fit_boxes
from losslab.data.coco_file import Annotations, read_coco
from losslab.data.coco_structure import annotated_size, check_structure, raise_if, without_background
from losslab.data.images import (
    MAX_LISTED,
    ImageFile,
    Record,
    counted,
    listing,
    probe_images,
    resolve_files,
)
from losslab.data.rle import rle_problems
from losslab.errors import LosslabError

ARRAYS = ("image_ids", "sizes", "exif", "starts", "boxes", "labels", "areas", "objects", "polygon_starts",
          "coord_starts", "coords")


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
    areas: np.ndarray  # float32 M: each object's own area as the file gives it (NaN where it gives none)
    objects: np.ndarray  # int64 M: the annotation (its index in the file) of each object
    polygon_starts: np.ndarray  # int64 A+1: the polygons of each annotation
    coord_starts: np.ndarray  # int64 P+1
    coords: np.ndarray  # float64: x1, y1, x2, y2, ... of every polygon
    rles: dict[int, dict]  # annotation index -> its RLE (pycocotools' dict)
    classes: list[str]
    category_ids: list[int]
    has_masks: bool  # some object has a polygon or an RLE (the others then get their box as mask)
    crowds: dict[int, list]  # image id -> its crowd regions' segmentations (task=segmentation ignores those pixels)
    notes: list[tuple[int, str]]  # (logging level, message): what loading reports, cached or not
    left_out: dict[str, int]  # what the targets leave out, counted for `losslab data` (crowd regions, ...)

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

    def record(self, folder: Path, index: int) -> Record:
        """Record `index`, its file in `folder`, its boxes and labels views of the index's arrays."""
        start, end = self.starts[index:index + 2].tolist()
        width, height = self.sizes[index].tolist()
        file = ImageFile(folder / self.names[index], width, height, bool(self.exif[index]))
        image_id = int(self.image_ids[index])
        return Record(image_id, image_id, file, self.names[index], self.boxes[start:end], self.labels[start:end],
                      self.areas[start:end])

    def segmentation(self, obj: int) -> list[np.ndarray] | dict | None:
        """Object `obj`'s polygons (float arrays), its RLE, or None when it has neither (its box is its mask)."""
        annotation = int(self.objects[obj])
        if annotation in self.rles:
            return self.rles[annotation]
        first, last = self.polygon_starts[annotation:annotation + 2].tolist()
        bounds = self.coord_starts[first:last + 1].tolist()
        return [self.coords[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)] or None


def read_json(path: Path) -> object:
    """The parsed file (its annotations as columns, see losslab.data.coco_file), or a LosslabError saying where it
    is broken."""
    try:
        return read_coco(path.read_text(encoding="utf-8"))
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
    annotations: Annotations = content["annotations"]
    categories, usable, notes = without_background(content["categories"], annotations, path)
    categories = sorted(categories, key=lambda category: category["id"])
    image_of = np.array(annotations.image_ids, dtype=np.int64).reshape(-1)
    annotated = set(image_of[usable].tolist())
    images = [image for image in content["images"] if keep_empty or image["id"] in annotated]
    files = probe_images(resolve_files(folder, [image["file_name"] for image in images], str(path),
                                       follow_outside_links),
                         [annotated_size(image) for image in images], str(path))
    sizes = np.array([(file.width, file.height) for file in files], dtype=np.int64).reshape(-1, 2)
    image_ids = np.array([image["id"] for image in images], dtype=np.int64)
    objects = _Objects(annotations, usable, image_of, image_ids, sizes, [c["id"] for c in categories])
    kept = objects.kept_records
    index = CocoIndex(
        names=[image["file_name"] for image, keep in zip(images, kept.tolist(), strict=True) if keep],
        image_ids=image_ids[kept], sizes=sizes[kept],
        exif=np.array([file.exif_transpose for file in files], dtype=bool)[kept], starts=objects.starts,
        boxes=objects.boxes, labels=objects.labels, areas=objects.areas, **_segmentations(annotations, objects, path),
        classes=[str(category["name"]) for category in categories], category_ids=[c["id"] for c in categories],
        crowds=annotations.crowds, notes=[(logging.WARNING, note) for note in notes],
        left_out={"crowd regions": objects.crowd, "clipped boxes": objects.clipped,
                  "dropped boxes": len(objects.nonfinite) + len(objects.degenerate),
                  "dropped images": int((~kept).sum())})
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

    def __init__(self, annotations: Annotations, usable: np.ndarray, image_of: np.ndarray, image_ids: np.ndarray,
                 sizes: np.ndarray, category_ids: list[int]):
        # every usable annotation's image is among `image_ids` (its id is listed, and it has an annotation)
        sorter = np.argsort(image_ids)
        owner = np.full(len(annotations), -1, dtype=np.int64)
        owner[usable] = sorter[np.searchsorted(image_ids, image_of[usable], sorter=sorter)]
        crowd = np.frombuffer(annotations.crowd, dtype=bool) if len(annotations) else np.zeros(0, dtype=bool)
        order = np.flatnonzero(usable)[np.argsort(owner[usable], kind="stable")]  # by image, in the file's order
        candidates = order[~crowd[order]]
        xywh = np.frombuffer(annotations.boxes, dtype=np.float64).reshape(-1, 4)[candidates]
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        boxes, valid = fit_boxes(xyxy, sizes[owner[candidates], 0], sizes[owner[candidates], 1])
        self.crowd = int(crowd[usable].sum())
        widths, heights = sizes[owner[candidates], 0], sizes[owner[candidates], 1]
        self.clipped = int((crosses_edge(xyxy, widths, heights) & valid).sum())
        self.nonfinite, self.degenerate = dropped_boxes(xyxy[~valid], valid[~valid],
                                                        [annotations.name(i) for i in candidates[~valid].tolist()])
        self.kept = candidates[valid]  # the annotation of each object, in the index's order
        self.boxes = boxes[valid]
        self.areas = np.frombuffer(annotations.areas, dtype=np.float64)[self.kept].astype(np.float32)
        categories = np.array(annotations.category_ids, dtype=np.int64).reshape(-1)[self.kept]
        self.labels = np.searchsorted(np.array(category_ids, dtype=np.int64), categories).astype(np.int64) + 1
        counts = np.bincount(owner[self.kept], minlength=len(image_ids))
        self.kept_records = (counts > 0) | (np.bincount(owner[usable], minlength=len(image_ids)) == 0)
        self.starts = np.concatenate([[0], np.cumsum(counts[self.kept_records])]).astype(np.int64)
        self.image_sizes = sizes[owner[self.kept]]  # width, height of each object's image
        self.without_mask: tuple[int, str] | None = None  # how many objects have neither polygon nor RLE, and
        # the first of them named (filled by _segmentations)

    def notes(self, path: Path, has_masks: bool) -> list[tuple[int, str]]:
        notes = [(logging.WARNING, f"{path}: {warning}")
                 for warning in dropped_box_warnings(self.nonfinite, self.degenerate)]
        if has_masks and self.without_mask:
            count, named = self.without_mask
            notes.append((logging.WARNING, f"{path}: {count} object(s) have no usable segmentation (none, or no "
                          f"polygon of 3 points or more) while others have one; their box is used as their mask "
                          f"({named})"))
        if self.clipped or self.crowd:
            notes.append((logging.INFO, f"{path}: {self.clipped} box(es) clipped to the image edge, {self.crowd} crowd "
                          "region(s) left out of the targets"))
        return notes


def _segmentations(annotations: Annotations, objects: _Objects, path: Path) -> dict:
    """The index's mask fields: every annotation's polygons (flat float arrays of at least three points) or RLE.

    The RLEs of objects must be of the image's size with readable counts, and their polygons must hold numbers.
    """
    polygon_counts = np.frombuffer(annotations.polygon_counts, dtype=np.int64)
    special = sorted(set(annotations.rles) | set(annotations.polygon_problems))  # few: checked one by one
    position = dict.fromkeys(special, -1)
    for obj in np.flatnonzero(np.isin(objects.kept, special)).tolist():
        position[int(objects.kept[obj])] = obj
    problems = []
    for annotation, obj in sorted(((a, obj) for a, obj in position.items() if obj >= 0), key=lambda pair: pair[1]):
        if annotation in annotations.rles:
            width, height = objects.image_sizes[obj].tolist()
            problems += rle_problems(f"annotation {annotations.name(annotation)}", annotations.rles[annotation],
                                     height, width)
        else:
            problems.append(annotations.polygon_problems[annotation])
    raise_if(problems, path, "a segmentation is a list of polygons [x1, y1, x2, y2, ...] or an RLE "
             "{'size': [height, width], 'counts': ...} of its image's size")
    without = np.flatnonzero((polygon_counts[objects.kept] == 0) if len(objects.kept) else np.zeros(0, dtype=bool))
    without = [obj for obj in without.tolist() if int(objects.kept[obj]) not in annotations.rles]
    if without:
        shown = [f"annotation {annotations.name(int(objects.kept[obj]))}" for obj in without[:MAX_LISTED]]
        more = f" and {len(without) - MAX_LISTED} more" if len(without) > MAX_LISTED else ""
        objects.without_mask = (len(without), listing(shown) + more)
    return {"objects": objects.kept.astype(np.int64),
            "polygon_starts": np.concatenate([[0], np.cumsum(polygon_counts, dtype=np.int64)]).astype(np.int64),
            "coord_starts": np.concatenate([[0], np.cumsum(np.frombuffer(annotations.lengths, dtype=np.int64))]
                                           ).astype(np.int64),
            "coords": np.frombuffer(annotations.coords, dtype=np.float64),
            "rles": {a: rle for a, rle in annotations.rles.items() if position[a] >= 0},
            "has_masks": len(without) < len(objects.kept)}

"""Pascal VOC data (`data=voc`): a folder with JPEGImages/, Annotations/ (one XML per image), ImageSets/Main/.

Boxes only: VOC's detection annotations have no instance masks, so Mask R-CNN cannot train on them.

- Which images: the ids listed in ImageSets/Main/<image_set>.txt (`image_set` may also be the path of such a
  list), or every XML in Annotations/ when `image_set` is null (VOC-format exports often have no ImageSets).
- Boxes are 1-based inclusive pixel coordinates: they become pixel edges (xmin - 1, ymin - 1, xmax, ymax),
  clipped to the image; boxes left with no width or height are dropped with one warning counting them.
- `difficult` objects are left out of the targets unless `keep_difficult`, as VOC's own evaluation ignores
  them (a detection there then counts as a false positive in losslab's mAP).
- Images whose XML lists no object are negatives and kept; images whose every object was left out
  (difficult, degenerate) are dropped: they are not negatives.
- A missing or zero <size> uses the image file's size. An object name not in `classes` is an error.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from xml.parsers.expat import ErrorString

import numpy as np

from losslab.data.boxes import dropped_box_warnings, dropped_boxes, fit_boxes
from losslab.data.images import (
    IMAGE_EXTENSIONS,
    AnnotatedImages,
    Record,
    counted,
    existing_file,
    existing_folder,
    listing,
    probe_images,
    refuse_outside_links,
)
from losslab.errors import LosslabError

log = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


class VocDataset(AnnotatedImages):
    """The images of one VOC image set under `root`, with the boxes of the objects named in `classes`."""

    def __init__(self, root: str, image_set: str | None = "trainval", keep_difficult: bool = False,
                 classes: list[str] | tuple[str, ...] = VOC_CLASSES, follow_outside_links: bool = False):
        folder = existing_folder(root, "data.root", "a Pascal VOC folder (with JPEGImages/ and Annotations/)")
        annotations = _subfolder(folder, "Annotations")
        stems = read_image_set(folder, image_set) if image_set is not None else _every_annotation(annotations)
        if len(set(classes)) != len(classes) or not classes:
            raise LosslabError(f"data.classes={list(classes)}: expected a non-empty list of distinct object names.")
        parsed = [parse_annotation(annotations / f"{stem}.xml") for stem in _existing_xml(annotations, stems)]
        _check_names(parsed, classes)
        files = _image_files(_subfolder(folder, "JPEGImages"), stems)
        if not follow_outside_links:
            refuse_outside_links(folder, files, f"the VOC folder {folder}")
        probed = probe_images(files, [objects.size for objects in parsed], f"the VOC folder {folder}")
        label_of = {name: label for label, name in enumerate(classes, start=1)}
        records, nonfinite, degenerate, dropped, difficult, clipped = [], [], [], 0, 0, 0
        for index, (stem, objects, file) in enumerate(zip(stems, parsed, probed, strict=True)):
            keep = [o for o in objects.objects if keep_difficult or not o.difficult]
            difficult += len(objects.objects) - len(keep)
            given = np.array([o.box for o in keep], dtype=np.float32).reshape(-1, 4)
            boxes, valid = fit_boxes(given, file.width, file.height)
            clipped += int(((boxes != given).any(axis=1) & valid).sum())
            refused = dropped_boxes(given, valid, [f"{stem}.xml object {o.index}" for o in keep])
            nonfinite, degenerate = nonfinite + refused[0], degenerate + refused[1]
            if objects.objects and not valid.any():
                dropped += 1
                continue
            labels = np.array([label_of[o.name] for o, ok in zip(keep, valid, strict=True) if ok], dtype=np.int64)
            records.append(Record(stem, index, file, file.path.name, boxes[valid], labels))
        super().__init__(records, tuple(classes), list(range(1, len(classes) + 1)))
        self.left_out = {"difficult": difficult, "clipped boxes": clipped,
                         "dropped boxes": len(nonfinite) + len(degenerate), "dropped images": dropped}
        for warning in dropped_box_warnings(nonfinite, degenerate):
            log.warning("%s: %s", annotations, warning)
        log.info("%s: %s (%d without objects)%s", folder, counted(len(records), "image"),
                 sum(len(r.labels) == 0 for r in records),
                 f", {dropped} whose every object is difficult or degenerate left out" if dropped else "")


def _subfolder(root: Path, name: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        raise LosslabError(f"data.root={root} has no {name}/ folder; expected a Pascal VOC folder with JPEGImages/, "
                           "Annotations/ and ImageSets/Main/ (e.g. VOCdevkit/VOC2012).")
    return folder


def read_image_set(root: Path, image_set: str, kind: str = "Main") -> list[str]:
    """The image ids of ImageSets/<kind>/<image_set>.txt (kind Main: detection, Segmentation: segmentation), or of
    the list file `image_set` names by path."""
    is_path = image_set.endswith(".txt") or "/" in image_set or os.sep in image_set
    if is_path:
        path = existing_file(image_set, "data.image_set", "a VOC image list (one image id per line)")
    else:
        path = root / "ImageSets" / kind / f"{image_set}.txt"
        if not path.is_file():
            lists = sorted(p.stem for p in path.parent.glob("*.txt") if "_" not in p.stem)
            raise LosslabError(
                f"data.image_set={image_set}: {path} does not exist. Expected one of the lists there "
                f"({', '.join(lists) or 'none'}), the path of a list file"
                + (", or data.image_set=null to read every XML file in Annotations/." if kind == "Main" else ".")
            )
    stems = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    unsafe = [stem for stem in stems if Path(stem).name != stem or stem in (".", "..")]
    if unsafe:
        raise LosslabError(f"{path} lists {len(unsafe)} id(s) that are not plain file names: {listing(unsafe)}; "
                           "an image id names Annotations/<id>.xml and JPEGImages/<id>.jpg, nothing outside them.")
    if not stems:
        raise LosslabError(f"{path} lists no images; expected one image id per line.")
    repeated = sorted(stem for stem, count in Counter(stems).items() if count > 1)
    if repeated:
        raise LosslabError(f"{path} lists {len(repeated)} image id(s) more than once: {listing(repeated)}; an image "
                           "listed twice would weigh double and could land in two splits. Remove the repeats.")
    return stems


def _every_annotation(annotations: Path) -> list[str]:
    stems = sorted(path.stem for path in annotations.glob("*.xml"))
    if not stems:
        raise LosslabError(f"{annotations} holds no .xml files; expected one VOC annotation per image.")
    return stems


def _existing_xml(annotations: Path, stems: list[str]) -> list[str]:
    missing = [f"{stem}.xml" for stem in stems if not (annotations / f"{stem}.xml").is_file()]
    if missing:
        raise LosslabError(f"{len(missing)} of the {len(stems)} listed images have no annotation file in "
                           f"{annotations}: {listing(missing)}. Fix the image list or add the files.")
    return stems


def _image_files(images: Path, stems: list[str]) -> list[Path]:
    """JPEGImages/<id>.<ext> for every id, preferring .jpg; one listing of the folder, not a stat per guess."""
    names: dict[str, str] = {}
    for entry in sorted(os.scandir(images), key=lambda e: _preference(e.name)):
        stem, extension = os.path.splitext(entry.name)
        if extension.lower() in IMAGE_EXTENSIONS:
            names.setdefault(stem, entry.name)
    missing = [stem for stem in stems if stem not in names]
    if missing:
        raise LosslabError(f"{len(missing)} of the {len(stems)} listed images have no image file in {images}: "
                           f"{listing(missing)} (looked for {', '.join(IMAGE_EXTENSIONS)}).")
    return [images / names[stem] for stem in stems]


def _preference(name: str) -> int:
    extension = os.path.splitext(name)[1].lower()
    return IMAGE_EXTENSIONS.index(extension) if extension in IMAGE_EXTENSIONS else len(IMAGE_EXTENSIONS)


# ---------------------------------------------------------------------------------------------- XML


@dataclass
class VocObject:
    """One <object> of an annotation file."""

    name: str
    box: list[float]  # XYXY pixel edges
    difficult: bool
    index: int  # its position in the file, from 1, for messages


@dataclass
class VocAnnotation:
    """One annotation file: the image size it gives, (width, height) or None, and its objects."""

    path: Path
    size: tuple[int, int] | None
    objects: list[VocObject]


def parse_annotation(path: Path) -> VocAnnotation:
    """The objects of one VOC XML file, or a LosslabError naming the file and what is wrong where."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        line, column = error.position  # expat counts columns from 0, editors from 1
        raise LosslabError(f"{path} is not valid XML ({ErrorString(error.code)}: line {line}, column {column + 1}). "
                           "Fix or re-export that file.") from error
    objects = []
    for index, element in enumerate(root.iter("object"), start=1):
        name = (element.findtext("name") or "").strip()
        box = element.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError) as error:
            raise LosslabError(f"{path}: object {index} ({name or 'no name'}) needs a <bndbox> with numeric <xmin>, "
                               "<ymin>, <xmax> and <ymax>.") from error
        if not name:
            raise LosslabError(f"{path}: object {index} has no <name>; expected the object's class name.")
        difficult = (element.findtext("difficult") or "0").strip() not in ("0", "", "false")
        # VOC counts pixels from 1 and includes the last one: the edges are xmin - 1 .. xmax.
        objects.append(VocObject(name, [xmin - 1, ymin - 1, xmax, ymax], difficult, index))
    return VocAnnotation(path, _size(root), objects)


def _size(root: ET.Element) -> tuple[int, int] | None:
    try:
        width, height = (int(float(root.findtext(f"size/{key}"))) for key in ("width", "height"))
    except (TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _check_names(parsed: list[VocAnnotation], classes: list[str] | tuple[str, ...]) -> None:
    """Refuse object names not in `classes`, suggesting the classes the files name (sorted), not the default's."""
    known = set(classes)
    unknown: dict[str, Path] = {}  # name -> the first file naming it
    found: set[str] = set()
    for annotation in parsed:
        for obj in annotation.objects:
            found.add(obj.name)
            if obj.name not in known:
                unknown.setdefault(obj.name, annotation.path)
    if unknown:
        raise LosslabError(
            f"the VOC annotations name {len(unknown)} object class(es) not in data.classes: "
            f"{listing([f'{name!r} (first in {path})' for name, path in unknown.items()])}. The files name "
            f"{len(found)} class(es): set data.classes to them (data.classes=[{','.join(sorted(found))}]) or fix "
            "the names in the XML files."
        )

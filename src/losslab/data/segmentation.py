"""Datasets of task=segmentation: images with a semantic mask each, split by image id, the train split augmented.

Items are `(image, target)`: a float CHW image in [0, 1] and {"mask": int64 [H, W], "image_id": int}, the mask
holding each pixel's class index (0 background, 255 ignore). `classes` names every index, background first.

- `data=shapes`: the built-in shapes, each pixel labelled by the shape painted last over it.
- `data=folder`: data.images (any image files) and data.masks (one <image stem>.png each: losslab.data.masks).
- `data=voc_seg`: Pascal VOC's segmentation set: ImageSets/Segmentation/<image_set>.txt, JPEGImages/<id>.jpg and
  SegmentationClass/<id>.png (palette indices; the 255 border around each object is ignored).
- `data=coco`: COCO instances rasterised to classes: each object's polygons or RLE painted with its label in the
  file's order (a later object covers an earlier one), crowd regions painted 255 (ignored, as their pixels mix
  many objects); categories keep COCO's order of ids.
- `data=yolo`: Ultralytics' polygon labels rasterised the same way (no crowd regions); classes keep the data.yaml's
  order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

from losslab.data.coco import CocoDataset
from losslab.data.datasets import LOADER_KEYS, SplitDataset, split_datasets
from losslab.data.images import IMAGE_EXTENSIONS, ImageFile, existing_folder, listing, probe_images, read_image
from losslab.data.masks import fit_to_masks, mask_headers, read_mask
from losslab.data.rle import pycocotools_rle
from losslab.data.segmentation_transforms import segmentation_train_transform
from losslab.data.shapes import CLASSES as SHAPE_CLASSES
from losslab.data.shapes import OBJECT_SIZE, ShapesDataset, paint_shapes
from losslab.data.voc import read_image_set
from losslab.data.yolo import YoloDataset
from losslab.errors import LosslabError
from losslab.losses.catalogue import IGNORE_INDEX

log = logging.getLogger(__name__)

BACKGROUND = "background"


class SemanticDataset(torch.utils.data.Dataset):
    """What every segmentation dataset provides besides its items: `classes` (index i is classes[i]), `image_ids`,
    `category_ids` (the annotations' id of classes 1..K, for COCO) and each image's pixels per class, decoded once
    and kept (stratified splits and automatic class weights need them; most runs never ask)."""

    classes: tuple[str, ...]
    image_ids: list
    category_ids: tuple[int, ...] = ()

    def mask(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def class_pixels(self, index: int) -> np.ndarray:
        """Pixels of each class in image `index`'s mask: int64 [len(classes)], ignored pixels left out."""
        if not hasattr(self, "_pixels"):
            self._pixels: dict[int, np.ndarray] = {}
        if index not in self._pixels:
            mask = self.mask(index)
            self._pixels[index] = np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=len(self.classes))
        return self._pixels[index]

    def image_labels(self) -> dict:
        """The classes present in each image (for stratified splits)."""
        return {image_id: set(np.flatnonzero(self.class_pixels(i)).tolist())
                for i, image_id in enumerate(self.image_ids)}


class ShapesSegmentation(SemanticDataset):
    """The built-in shapes (losslab.data.shapes: the same images for the same options) with semantic masks."""

    classes = (BACKGROUND, *SHAPE_CLASSES)

    def __init__(self, num_images: int, image_size: int, min_objects: int, max_objects: int, seed: int,
                 object_size: tuple[float, float] | list[float] = OBJECT_SIZE):
        self.shapes = ShapesDataset(num_images, image_size, min_objects, max_objects, seed, object_size)
        self.image_ids = self.shapes.image_ids

    def __len__(self) -> int:
        return len(self.shapes)

    def _render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        shapes = self.shapes
        if not 0 <= index < len(shapes):
            raise IndexError(index)
        rng = np.random.default_rng((shapes.seed, index))
        image, masks, labels = paint_shapes(rng, shapes.image_size, shapes.min_objects, shapes.max_objects,
                                            shapes.object_size)
        semantic = np.zeros(image.shape[:2], dtype=np.int64)
        for mask, label in zip(masks, labels, strict=True):  # painted in order: the last shape over a pixel wins
            semantic[mask] = label
        return image, semantic

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image, semantic = self._render(index)
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), {"mask": torch.from_numpy(semantic),
                                                                       "image_id": index}

    def mask(self, index: int) -> np.ndarray:
        return self._render(index)[1]


class MaskFiles(SemanticDataset):
    """Image files paired with mask files (data=folder, data=voc_seg): headers and sizes checked on loading."""

    def __init__(self, images: list[Path], masks: list[Path], image_ids: list, classes: tuple[str, ...], source: str):
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise LosslabError(f"data.classes={list(classes)}: expected distinct names of at least two classes, "
                               "index 0 (background) first.")
        sizes = mask_headers(masks, source)
        self.files: list[ImageFile] = fit_to_masks(probe_images(images, [None] * len(images), source), sizes, masks,
                                                   source)
        self.masks, self.image_ids, self.classes = masks, image_ids, tuple(classes)
        log.info("%s: %d images with masks, %d classes", source, len(images), len(classes))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        return read_image(self.files[index]), {"mask": torch.from_numpy(self.mask(index)), "image_id": index}

    def mask(self, index: int) -> np.ndarray:
        return read_mask(self.masks[index], len(self.classes))


def folder_dataset(images: str, masks: str, classes: list[str]) -> MaskFiles:
    """data=folder: every image of `images` with `masks`/<its stem>.png."""
    image_folder = existing_folder(images, "data.images", "the folder holding the images")
    mask_folder = existing_folder(masks, "data.masks", "the folder holding one <image name>.png mask per image")
    paths = sorted(p for p in image_folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise LosslabError(f"data.images={images} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        repeated = sorted({s for s in stems if stems.count(s) > 1})
        raise LosslabError(f"data.images={images} holds several images named {listing(repeated)} (other extensions); "
                           "each image's mask is <name>.png, so names must be unique.")
    mask_paths = [mask_folder / f"{stem}.png" for stem in stems]
    missing = [p.name for p in mask_paths if not p.is_file()]
    if missing:
        raise LosslabError(f"{len(missing)} of the {len(paths)} images of data.images={images} have no mask in "
                           f"data.masks={masks}: {listing(missing)}. Each image needs <its name>.png there.")
    return MaskFiles(paths, mask_paths, stems, tuple(classes), f"data.images={images}")


def voc_segmentation_dataset(root: str, image_set: str, classes: list[str]) -> MaskFiles:
    """data=voc_seg: the images of ImageSets/Segmentation/<image_set>.txt with their SegmentationClass masks."""
    folder = existing_folder(root, "data.root", "a Pascal VOC folder with JPEGImages/ and SegmentationClass/")
    for name in ("JPEGImages", "SegmentationClass"):
        if not (folder / name).is_dir():
            raise LosslabError(f"data.root={root} has no {name}/ folder; expected a Pascal VOC folder with "
                               "JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/ (e.g. VOCdevkit/VOC2012).")
    stems = read_image_set(folder, image_set, kind="Segmentation")
    images = [folder / "JPEGImages" / f"{stem}.jpg" for stem in stems]
    masks = [folder / "SegmentationClass" / f"{stem}.png" for stem in stems]
    missing = [p.name for pair in zip(images, masks, strict=True) for p in pair if not p.is_file()]
    if missing:
        raise LosslabError(f"{len(missing)} files of the {len(stems)} listed images are not in {folder}: "
                           f"{listing(missing)}. Fix the image list or add the files.")
    return MaskFiles(images, masks, stems, tuple(classes), f"the VOC folder {folder}")


class InstanceSegmentation(SemanticDataset):
    """A dataset of instance masks (COCO's, YOLO's polygons) rasterised to classes (see the module's docstring);
    loading and its checks are the instance reader's. `missing` says what the data lacks when it has no masks."""

    def __init__(self, instances: CocoDataset | YoloDataset, missing: str):
        if not instances.has_masks:
            raise LosslabError(f"{missing}; task=segmentation needs them to paint the classes.")
        self.instances = instances
        self.classes = (BACKGROUND, *instances.classes)
        self.category_ids = list(instances.category_ids)
        self.image_ids = list(instances.image_ids)
        self.crowds: dict[int, list] = {}  # image id -> its crowd regions' segmentations (COCO's)

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image = read_image(self.instances.records[index].file)
        return image, {"mask": torch.from_numpy(self.mask(index)), "image_id": index}

    def mask(self, index: int) -> np.ndarray:
        record = self.instances.records[index]
        height, width = record.file.height, record.file.width
        semantic = np.zeros((height, width), dtype=np.int64)
        for instance, label in zip(self.instances.masks(index).numpy(), record.labels, strict=True):
            semantic[instance.astype(bool)] = label
        for region in self.crowds.get(record.image_id, []):
            semantic[mask_utils.decode(pycocotools_rle(region, height, width)).astype(bool)] = IGNORE_INDEX
        return semantic

    def own_split(self) -> dict[str, list]:
        """The split the data names itself (data=yolo's train/val/test)."""
        return self.instances.own_split()


class CocoSegmentation(InstanceSegmentation):
    """data=coco rasterised to classes, crowd regions painted 255."""

    def __init__(self, images: str, annotations: str, keep_empty: bool = True, follow_outside_links: bool = False,
                 cache: bool = True):
        super().__init__(CocoDataset(images, annotations, keep_empty, follow_outside_links, cache),
                         f"data.annotations={annotations} has no 'segmentation' (polygons or RLE) on any object")
        self.crowds = self.instances.index.crowds


def yolo_segmentation(yaml: str, cache: bool = True) -> InstanceSegmentation:
    """data=yolo rasterised to classes: its polygon labels painted in each file's order."""
    return InstanceSegmentation(YoloDataset(yaml, cache), f"data.yaml={yaml} has no polygon labels (`class x1 y1 x2 y2 "
                                "...`), only boxes")


READERS: dict[str, Callable[..., SemanticDataset]] = {
    "shapes": ShapesSegmentation, "folder": folder_dataset, "voc_seg": voc_segmentation_dataset,
    "coco": CocoSegmentation, "yolo": yolo_segmentation,
}


def load_segmentation_dataset(data_options: dict) -> SemanticDataset:
    """The full dataset the `data` config section describes, before splitting."""
    name = data_options["name"]
    if name not in READERS:
        raise LosslabError(f"data={name} has no semantic masks; task=segmentation reads data={', data='.join(READERS)} "
                           "(data=voc has boxes only: use data=voc_seg, Pascal VOC's segmentation set).")
    return READERS[name](**{key: value for key, value in data_options.items() if key not in LOADER_KEYS})


@dataclass
class SegmentationData:
    """The three splits of one segmentation dataset, its class names (index 0 first) and the ids of each split."""

    train: SplitDataset
    val: SplitDataset
    test: SplitDataset
    classes: tuple[str, ...]
    split_ids: dict[str, list]
    category_ids: tuple[int, ...] = field(default_factory=tuple)


def build_segmentation_datasets(data_options: dict, split_options: dict,
                                augment_options: dict | None = None) -> SegmentationData:
    """Load the dataset, split it by image id and attach the train-time augmentations (`augment` section)."""
    parts = split_datasets(data_options, split_options, load=load_segmentation_dataset)
    train_dataset, train_indices = parts["train"]
    return SegmentationData(
        train=SplitDataset(train_dataset, train_indices,
                           segmentation_train_transform(augment_options or {}, train_dataset, train_indices)),
        val=SplitDataset(*parts["val"]),
        test=SplitDataset(*parts["test"]),
        classes=tuple(train_dataset.classes),
        split_ids={name: [dataset.image_ids[i] for i in indices] for name, (dataset, indices) in parts.items()},
        category_ids=tuple(train_dataset.category_ids),
    )


def count_pixels(split: SplitDataset, num_classes: int) -> list[int]:
    """Pixels of each class in a split's masks (before augmentation), what weighted_ce's automatic weights need."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for index in split.indices:
        counts += split.dataset.class_pixels(index)[:num_classes]
    return counts.tolist()


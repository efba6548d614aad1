"""What the audit reads of a built dataset's splits (`split_facts`), whichever reader made it: the records that
image readers keep (COCO, VOC and any reader filling `AnnotatedImages`: boxes and image sizes from the
annotations, no pixel decoded), the class pixels of segmentation datasets, and otherwise the items themselves
(the built-in shapes, drawn from their seed).

Content digests hash a file's bytes (BLAKE2b), never cached: a changed file is always seen as it is. Only files
whose size another file shares are read: a file of a unique size cannot be a copy of another, and on a dataset of
many thousand JPEGs that leaves almost nothing to read. Images without a file (the shapes) hash their pixels.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from losslab.data.audit import ImageFacts
from losslab.data.images import ImageFile
from losslab.data.mixing import AugmentedDataset

SPLIT_NAMES = ("train", "val", "test")


def split_facts(data) -> tuple[dict[str, list[ImageFacts]], str, bool]:
    """The facts of every image of each split of `data` (DetectionData or SegmentationData, as a task's
    build_data returns it, augmentation left out), what their amounts count ("objects" or "pixels") and whether
    class 0 is the background."""
    splits = {name: _unwrapped(getattr(data, name)) for name in SPLIT_NAMES}
    by_pixels = any(hasattr(split.dataset, "class_pixels") for split in splits.values())
    read = {name: [image_facts(split.dataset, index, len(data.classes)) for index in split.indices]
            for name, split in splits.items()}
    digests = content_digests([path for pairs in read.values() for _, path in pairs if path is not None])
    facts = {name: [replace(f, digest=digests.get(path)) if path is not None else f for f, path in pairs]
             for name, pairs in read.items()}
    return facts, "pixels" if by_pixels else "objects", by_pixels


def content_digests(paths: list[Path]) -> dict[Path, str]:
    """The digest of each file whose size another of `paths` shares (a path listed twice shares its own)."""
    sizes = {path: path.stat().st_size for path in paths}
    shared = Counter(sizes[path] for path in paths)
    return {path: file_digest(path) for path, size in sizes.items() if shared[size] > 1}


def left_out(data) -> dict[str, int] | None:
    """What the readers of `data`'s splits left out while loading (summed over their distinct datasets), as their
    `left_out` counts say; None when no reader counts it."""
    datasets = {id(split.dataset): split.dataset for split in (_unwrapped(getattr(data, n)) for n in SPLIT_NAMES)}
    counts = [found for d in datasets.values() if (found := getattr(_instances(d), "left_out", None)) is not None]
    if not counts:
        return None
    return {key: sum(count.get(key, 0) for count in counts) for key in counts[0]}


def image_facts(dataset, index: int, num_classes: int) -> tuple[ImageFacts, Path | None]:
    """One image's facts, read the cheapest way `dataset` allows, and its file (its digest still to come), or None
    for an image without a file (its pixels' digest given)."""
    if hasattr(dataset, "class_pixels"):  # class masks: pixels per class, no boxes
        file = _image_file(dataset, index)
        pixels = np.asarray(dataset.class_pixels(index), dtype=np.int64)[:num_classes]
        if file is None:
            image, _ = dataset[index]
            return ImageFacts(dataset.image_ids[index], image.shape[-1], image.shape[-2], pixels, np.zeros((0, 4)),
                              pixel_digest(image)), None
        return ImageFacts(dataset.image_ids[index], file.width, file.height, pixels, np.zeros((0, 4))), file.path
    if hasattr(dataset, "records"):
        record = dataset.records[index]
        return ImageFacts(record.image_id, record.file.width, record.file.height,
                          _object_counts(record.labels, num_classes),
                          np.asarray(record.boxes, dtype=np.float64)), record.file.path
    image, target = dataset[index]
    labels = np.asarray(target["labels"], dtype=np.int64)
    return ImageFacts(dataset.image_ids[index], image.shape[-1], image.shape[-2], _object_counts(labels, num_classes),
                      np.asarray(target["boxes"], dtype=np.float64), pixel_digest(image)), None


def file_digest(path: Path) -> str:
    """The BLAKE2b digest of the file's bytes."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def pixel_digest(image) -> str:
    """The BLAKE2b digest of an image tensor's values."""
    return hashlib.blake2b(np.ascontiguousarray(image.numpy()).tobytes(), digest_size=16).hexdigest()


def _object_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Objects of each class, from labels 1..K."""
    return np.bincount(np.asarray(labels, dtype=np.int64) - 1, minlength=num_classes)[:num_classes]


def _image_file(dataset, index: int) -> ImageFile | None:
    """The image file behind a segmentation dataset's image `index`, where it has one."""
    instances = _instances(dataset)
    if hasattr(instances, "records"):
        return instances.records[index].file
    files = getattr(dataset, "files", None)
    return files[index] if files is not None else None


def _instances(dataset):
    """The instance dataset a segmentation dataset paints its classes from (data=coco), or the dataset itself."""
    return getattr(dataset, "instances", dataset)


def _unwrapped(split):
    """The SplitDataset under a split's augmentation, whose `dataset` and `indices` say which images it holds."""
    return split.dataset if isinstance(split, AugmentedDataset) else split

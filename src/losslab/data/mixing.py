"""Augmentations that mix several images of a dataset: mosaic and copy-paste, and the dataset wrapper applying them.

`augmented(dataset, options)` is the train split as the model sees it: for image i it first builds a mosaic
(with probability mosaic.p), then pastes objects of another image (copy_paste.p), then runs the per-image
geometric and photometric operations of losslab.data.transforms. Random choices come from torch's global
generator, which DataLoader seeds in every worker, so a seeded run sees the same augmentations.

Copy-paste cuts objects out by their masks, so it needs masks: on box-only data (no `masks` in the targets)
it is skipped, with one warning. task=segmentation has a mosaic of its own, of class masks (class_mask_mosaic).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from losslab.data.augment_options import checked_options, enabled
from losslab.data.transforms import (
    Sample,
    build_train_transform,
    mask_extents,
    per_object_keys,
    sanitize,
    unwrap,
    wrap,
)

log = logging.getLogger(__name__)


def mosaic(samples: list[Sample], center: tuple[int, int]) -> Sample:
    """Four samples in a 2x2 grid meeting at `center` (x, y) on the canvas of the first one.

    Each image is cropped to its quadrant's aspect ratio at the corner that touches the centre, as large as it
    fits, and resized to the quadrant: objects keep their proportions and the mosaic has no empty area.
    The target is the first sample's, with the objects of all four.
    """
    height, width = samples[0][0].shape[-2:]
    cx, cy = center
    quadrants = [(0, 0, cx, cy), (cx, 0, width, cy), (0, cy, cx, height), (cx, cy, width, height)]
    pieces = [_fill_quadrant(sample, quadrant, (height, width))
              for sample, quadrant in zip(samples, quadrants, strict=True)]
    image = torch.zeros_like(samples[0][0])
    for (piece, _), (x0, y0, x1, y1) in zip(pieces, quadrants, strict=True):
        image[:, y0:y1, x0:x1] = piece
    target = dict(samples[0][1])
    keys = ["boxes", *per_object_keys(target), *(["masks"] if "masks" in target else [])]
    target.update({key: torch.cat([piece_target[key] for _, piece_target in pieces]) for key in keys})
    return sanitize(image, target)


def class_mask_mosaic(samples: list[Sample], center: tuple[int, int]) -> Sample:
    """mosaic() for task=segmentation: four samples whose target holds one `mask` of class indices (H x W).

    The same quadrants and crops as the instance mosaic; each mask is resized with nearest neighbours, so every
    pixel keeps a class index of its own image (the ignore index included), never a blend of two.
    """
    height, width = samples[0][0].shape[-2:]
    cx, cy = center
    quadrants = [(0, 0, cx, cy), (cx, 0, width, cy), (0, cy, cx, height), (cx, cy, width, height)]
    image = torch.zeros_like(samples[0][0])
    mask = samples[0][1]["mask"].new_zeros((height, width))
    for (piece, target), (x0, y0, x1, y1) in zip(samples, quadrants, strict=True):
        fit = _quadrant_fit(piece.shape[-2:], (x0, y0, x1, y1))
        image[:, y0:y1, x0:x1] = fit(piece)
        mask[y0:y1, x0:x1] = fit(tv_tensors.Mask(target["mask"])).as_subclass(torch.Tensor)
    return image, {**samples[0][1], "mask": mask}


def _quadrant_fit(size: tuple[int, int], quadrant: tuple[int, int, int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """What puts an image of `size` (height, width) into `quadrant`: its largest crop of the quadrant's aspect
    ratio, at the corner that touches the centre, resized to the quadrant (tv_tensors.Mask: nearest neighbours)."""
    x0, y0, x1, y1 = quadrant
    width, height = x1 - x0, y1 - y0
    image_height, image_width = size
    scale = min(image_width / width, image_height / height)  # the largest crop of the quadrant's aspect ratio
    crop_width = min(image_width, max(1, round(width * scale)))
    crop_height = min(image_height, max(1, round(height * scale)))
    left = image_width - crop_width if x0 == 0 else 0  # the crop's corner nearest the centre stays there
    top = image_height - crop_height if y0 == 0 else 0

    def fit(inpt: torch.Tensor) -> torch.Tensor:
        return F.resized_crop(inpt, top, left, crop_height, crop_width, [height, width], antialias=True)

    return fit


def _fill_quadrant(sample: Sample, quadrant: tuple[int, int, int, int], canvas: tuple[int, int]) -> Sample:
    """The quadrant's pixels from `sample`, with its boxes in canvas coordinates and its masks canvas-sized."""
    x0, y0, x1, y1 = quadrant
    image, target = wrap(*sample)
    fit = _quadrant_fit(image.shape[-2:], quadrant)
    piece, target = unwrap(fit(image), {**target, "boxes": fit(target["boxes"]),
                                        **({"masks": fit(target["masks"])} if "masks" in target else {})})
    target["boxes"] = target["boxes"] + torch.tensor([x0, y0, x0, y0], dtype=target["boxes"].dtype)
    if "masks" in target:
        masks = target["masks"].new_zeros((len(target["masks"]), *canvas))
        masks[:, y0:y1, x0:x1] = target["masks"]
        target["masks"] = masks
    return piece, target


def copy_paste(sample: Sample, donor: Sample, chosen: torch.Tensor, min_visible: float) -> Sample:
    """`sample` with the `chosen` objects of `donor` (resized to the sample's size) pasted on top by their masks.

    Pasted pixels are cut out of the sample's masks; objects keeping less than `min_visible` of their mask are
    dropped, and every box becomes its mask's extent. Both samples need masks.
    """
    image, target = sample
    donor_image, donor_target = donor
    size = list(image.shape[-2:])
    donor_image = F.resize_image(donor_image, size, antialias=True)
    donor_masks = F.resize_mask(donor_target["masks"][chosen], size)
    pasted = donor_masks.flatten(1).ne(0).any(dim=1)  # objects may vanish when the donor is shrunk
    cover = donor_masks[pasted].ne(0).any(dim=0)
    visible = target["masks"] * ~cover
    area = target["masks"].flatten(1).ne(0).sum(dim=1)
    kept = visible.flatten(1).ne(0).sum(dim=1) >= (min_visible * area).clamp(min=1)
    masks = torch.cat([visible[kept], donor_masks[pasted].to(visible.dtype)])
    combined = {**target, "boxes": mask_extents(masks), "masks": masks}
    for key in per_object_keys(target):
        combined[key] = torch.cat([target[key][kept], donor_target[key][chosen][pasted]])
    return torch.where(cover, donor_image, image), combined


class AugmentedDataset(Dataset):
    """`dataset` (items `(image, target)`, a `classes` attribute) with mosaic, copy-paste and per-image augmentations.

    `dataset` stays reachable as `.dataset`, for whatever must read the un-augmented images.
    """

    def __init__(self, dataset: Dataset, options: dict):
        self.dataset = dataset
        self.classes = dataset.classes
        self.options = checked_options(options)
        self.transform = build_train_transform(options)
        self.warned_no_masks = False

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        image, target = self.dataset[index]
        if happens(self.options["mosaic"]["p"]):
            others = [self.dataset[other] for other in _other_indices(index, len(self), 3)]
            image, target = mosaic([(image, target), *others], self._mosaic_center(image))
        if happens(self.options["copy_paste"]["p"]):
            image, target = self._copy_paste(index, image, target)
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def _mosaic_center(self, image: torch.Tensor) -> tuple[int, int]:
        return mosaic_center(image, self.options["mosaic"]["center"])

    def _copy_paste(self, index: int, image: torch.Tensor, target: dict) -> Sample:
        if "masks" not in target:
            if not self.warned_no_masks:
                log.warning("augment.copy_paste needs masks; this dataset has only boxes, so copy-paste is skipped")
                self.warned_no_masks = True
            return image, target
        donor = self.dataset[_other_indices(index, len(self), 1)[0]]
        count = len(donor[1]["labels"])
        if count == 0:
            return image, target
        pasted = torch.randint(1, min(self.options["copy_paste"]["max_objects"], count) + 1, ()).item()
        chosen = torch.randperm(count)[:pasted]
        return copy_paste((image, target), donor, chosen, self.options["copy_paste"]["min_visible"])


def mosaic_center(image: torch.Tensor, center_range: list[float]) -> tuple[int, int]:
    """A random point in the configured centre range (augment.mosaic.center), at least one pixel from every edge."""
    low, high = center_range
    height, width = image.shape[-2:]
    fx, fy = (low + (high - low) * torch.rand(2)).tolist()
    return min(max(round(fx * width), 1), width - 1), min(max(round(fy * height), 1), height - 1)


def happens(probability: float) -> bool:
    return probability > 0 and torch.rand(()).item() < probability


def _other_indices(index: int, length: int, count: int) -> list[int]:
    """`count` random indices other than `index` (repeats allowed); `index` itself when it is the only one."""
    if length == 1:
        return [index] * count
    drawn = torch.randint(length - 1, (count,)).tolist()
    return [other + (other >= index) for other in drawn]


def augmented(dataset: Dataset, options: dict) -> Dataset:
    """The train split as the model sees it: `dataset` itself when every operation is off."""
    if not enabled(checked_options(options)):
        return dataset
    return AugmentedDataset(dataset, options)


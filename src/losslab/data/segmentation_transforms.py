"""Train-time augmentations of task=segmentation: the `augment` section's mosaic, geometric and photometric
operations (losslab.data.transforms builds the per-image ones), applied to the image and its mask together.

torchvision.transforms.v2 moves a tv_tensors.Mask with the pixels and resamples it with nearest neighbours, so
class indices stay class indices. Pixels a geometric operation brings in from outside the image (a rotation's
corners, a crop's padding) get the ignore index: a mask of ones goes through the same transform, and where it
comes out 0 the pixel was not in the image. The mosaic puts four images of the train split and their class masks
in a 2x2 grid (losslab.data.mixing.class_mask_mosaic); copy-paste pastes object instances, which class masks do
not have, and stays detection's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from losslab.data.augment_options import GEOMETRIC, PHOTOMETRIC, checked_options, enabled
from losslab.data.mixing import class_mask_mosaic, happens, mosaic_center
from losslab.data.transforms import build_operation
from losslab.errors import LosslabError
from losslab.losses.catalogue import IGNORE_INDEX

Sample = tuple[torch.Tensor, dict]


def segmentation_train_transform(options: dict, dataset: Dataset | None = None,
                                 indices: Sequence[int] = ()) -> Callable[[torch.Tensor, dict], Sample] | None:
    """The augmentations of an `augment` section for image and mask, or None when all are off. A mosaic draws its
    three other images from `dataset` at the train split's `indices`."""
    resolved = checked_options(options)
    if resolved["copy_paste"]["p"] > 0:
        raise LosslabError("augment.copy_paste pastes object instances between images, which task=segmentation "
                           "does not have; set augment.copy_paste.p=0 (every built-in preset does).")
    operations = [build_operation(name, resolved[name]) for name in enabled(resolved, GEOMETRIC + PHOTOMETRIC)]
    per_image = SegmentationTransform(v2.Compose(operations)) if operations else None
    if resolved["mosaic"]["p"] == 0:
        return per_image
    if dataset is None or not indices:
        raise ValueError("a segmentation mosaic needs the train split's dataset and indices")
    return MaskMosaic(dataset, list(indices), resolved["mosaic"], per_image)


class MaskMosaic:
    """With probability mosaic.p, the sample and three images drawn from the train split in a 2x2 mosaic of images
    and class masks; then the per-image augmentations. Random choices come from torch's global generator, which
    DataLoader seeds in every worker, as for detection's mosaic."""

    def __init__(self, dataset: Dataset, indices: list[int], options: dict,
                 per_image: SegmentationTransform | None):
        self.dataset, self.indices, self.options, self.per_image = dataset, indices, options, per_image

    def __call__(self, image: torch.Tensor, target: dict) -> Sample:
        if happens(self.options["p"]):
            drawn = torch.randint(len(self.indices), (3,)).tolist()  # any of the split's images, this one too
            others = [self.dataset[self.indices[i]] for i in drawn]
            image, target = class_mask_mosaic([(image, target), *others], mosaic_center(image, self.options["center"]))
        return (image, target) if self.per_image is None else self.per_image(image, target)

    def __repr__(self) -> str:
        return f"MaskMosaic(p={self.options['p']}, then {self.per_image!r})"


class SegmentationTransform:
    """Applies a v2 transform to an image and its target's mask; pixels from outside the image become ignored."""

    def __init__(self, transform: v2.Transform):
        self.transform = transform

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        inside = tv_tensors.Mask(torch.ones(image.shape[-2:], dtype=torch.uint8))
        image, mask, inside = self.transform(tv_tensors.Image(image), tv_tensors.Mask(target["mask"]), inside)
        mask = mask.as_subclass(torch.Tensor).masked_fill(inside.as_subclass(torch.Tensor) == 0, IGNORE_INDEX)
        return image.as_subclass(torch.Tensor), {**target, "mask": mask}

    def __repr__(self) -> str:
        return f"SegmentationTransform({self.transform!r})"

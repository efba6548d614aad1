"""Train-time augmentations of task=segmentation: the `augment` section's geometric and photometric operations
(losslab.data.transforms builds them), applied to the image and its mask together.

torchvision.transforms.v2 moves a tv_tensors.Mask with the pixels and resamples it with nearest neighbours, so
class indices stay class indices. Pixels a geometric operation brings in from outside the image (a rotation's
corners, a crop's padding) get the ignore index: a mask of ones goes through the same transform, and where it
comes out 0 the pixel was not in the image. Mosaic and copy-paste mix instances and stay detection's.
"""

from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from losslab.data.augment_options import GEOMETRIC, MIXING, PHOTOMETRIC, checked_options, enabled
from losslab.data.transforms import build_operation
from losslab.errors import LosslabError
from losslab.losses.catalogue import IGNORE_INDEX


def segmentation_train_transform(options: dict) -> SegmentationTransform | None:
    """The per-image augmentations of an `augment` section for image and mask, or None when all are off."""
    resolved = checked_options(options)
    mixing = enabled(resolved, MIXING)
    if mixing:
        raise LosslabError(f"augment.{mixing[0]} mixes object instances between images, which task=segmentation does "
                           f"not have; set augment.{mixing[0]}.p=0 (augment=basic and augment=none do).")
    operations = [build_operation(name, resolved[name]) for name in enabled(resolved, GEOMETRIC + PHOTOMETRIC)]
    return SegmentationTransform(v2.Compose(operations)) if operations else None


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

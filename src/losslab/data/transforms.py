"""Train-time augmentations applied jointly to image, boxes and masks (torchvision.transforms.v2)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

Sample = tuple[torch.Tensor, dict]


def build_train_transform(horizontal_flip: float) -> Callable[[torch.Tensor, dict], Sample] | None:
    """The augmentation pipeline for the train split, or None when nothing is enabled."""
    ops: list[v2.Transform] = []
    if horizontal_flip > 0:
        ops.append(v2.RandomHorizontalFlip(p=horizontal_flip))
    if not ops:
        return None
    return JointTransform(v2.Compose([*ops, v2.SanitizeBoundingBoxes()]))


class JointTransform:
    """Wraps a sample in tv_tensors so v2 moves boxes and masks with the pixels, then unwraps it."""

    def __init__(self, transform: v2.Transform):
        self.transform = transform

    def __call__(self, image: torch.Tensor, target: dict) -> Sample:
        height, width = image.shape[-2:]
        wrapped = dict(target)
        wrapped["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(height, width))
        if "masks" in target:
            wrapped["masks"] = tv_tensors.Mask(target["masks"])
        image, wrapped = self.transform(tv_tensors.Image(image), wrapped)
        unwrapped = {key: value.as_subclass(torch.Tensor) if isinstance(value, torch.Tensor) else value
                     for key, value in wrapped.items()}
        return image.as_subclass(torch.Tensor), unwrapped

    def __repr__(self) -> str:
        return repr(self.transform)

"""The detector's resize as a TorchScript file must hold it: the same output size as eager PyTorch for every image.

torchvision's GeneralizedRCNNTransform computes the resize scale in Python floats (double precision) when it runs
eagerly, but in a float32 tensor when it is scripted. The two round differently: with min_size=max_size=128 an
800 x 600 photo becomes 128 x 96 eagerly and 127 x 95 scripted, which moves every box and changes what is
detected. `ExactResizeTransform` scripts the eager arithmetic instead; eagerly and when traced for ONNX (whose
graph already gives the eager size) it is torchvision's own transform.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    _resize_image_and_masks,
    resize_boxes,
    resize_keypoints,
)


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor a detector scales an image by: shorter side to `min_size`, longer side at most `max_size`
    (torchvision's eager arithmetic, in double precision)."""
    return min(min_size / min(height, width), max_size / max(height, width))


class ExactResizeTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform whose scripted resize gives the eager output size."""

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None
               ) -> tuple[Tensor, dict[str, Tensor] | None]:
        if not torch.jit.is_scripting():
            return super().resize(image, target)
        # The scripted path: torchvision's resize step for step, with the size computed as its eager code does
        # (the scale in double precision, floor(side * scale) as torch.nn.functional.interpolate takes it).
        height, width = image.shape[-2:]
        if self.training:
            if self._skip_resize:
                return image, target
            size = self.torch_choice(self.min_size)
        else:
            size = self.min_size[-1]
        fixed_size = self.fixed_size
        if fixed_size is None:
            scale = resize_scale(height, width, size, self.max_size)
            fixed_size = (int(math.floor(width * scale)), int(math.floor(height * scale)))
        image, target = _resize_image_and_masks(image, size, self.max_size, target, fixed_size)
        if target is None:
            return image, target
        target["boxes"] = resize_boxes(target["boxes"], [height, width], image.shape[-2:])
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], [height, width], image.shape[-2:])
        return image, target


def with_exact_resize(model: nn.Module) -> nn.Module:
    """`model` with an ExactResizeTransform of the same settings in place of its torchvision transform."""
    stock = model.transform
    model.transform = ExactResizeTransform(stock.min_size, stock.max_size, stock.image_mean, stock.image_std,
                                           stock.size_divisible, stock.fixed_size, _skip_resize=stock._skip_resize)
    model.transform.train(stock.training)
    return model

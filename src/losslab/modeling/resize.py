"""The detector's resize as an exported file must hold it: the same output size as eager PyTorch for every image.

torchvision's GeneralizedRCNNTransform computes the resize scale in Python floats (double precision) when it runs
eagerly, but in float32 when it is scripted or traced for ONNX. The two round differently: with
min_size=max_size=128 an 800 x 600 photo becomes 128 x 96 eagerly and 127 x 95 scripted, and a 660 x 432 VOC photo
83 x 127 instead of 83 x 128 in onnxruntime; each moves every box and changes what is detected.
`ExactResizeTransform` computes the eager size in both exported forms: scripted, in Python floats (TorchScript's
`float` is a double); traced, in float64 tensors of the graph, so that onnxruntime repeats the same IEEE steps for
the height and width of each image it is given. Eagerly it is torchvision's own transform.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    _get_shape_onnx,
    _resize_image_and_masks,
    resize_boxes,
    resize_keypoints,
)


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor a detector scales an image by: shorter side to `min_size`, longer side at most `max_size`
    (torchvision's eager arithmetic, in double precision)."""
    return min(min_size / min(height, width), max_size / max(height, width))


def traced_size(image: Tensor, min_size: int, max_size: int) -> tuple[Tensor, Tensor]:
    """(height, width) `image` resizes to, as graph operations on its dynamic shape: resize_scale and the floor of
    side x scale that torch.nn.functional.interpolate takes, in float64 as eager PyTorch computes them. (Written
    as `limits / sides`, not `min_size / side`: the ONNX exporter turns a number divided by a tensor into a
    reciprocal times the number, which rounds differently.)"""
    sides = _get_shape_onnx(image).to(torch.float64)
    limits = torch.tensor([float(min_size), float(max_size)], dtype=torch.float64)
    scale = (limits / torch.stack([sides.min(), sides.max()])).min()
    height, width = (sides * scale).floor().to(torch.int64).unbind()
    return height, width


def eager_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """The (height, width) eager PyTorch resizes an image to: floor(side x resize_scale), in double precision."""
    scale = resize_scale(height, width, min_size, max_size)
    return math.floor(height * scale), math.floor(width * scale)


def rounds_apart(height: int, width: int, min_size: int, max_size: int) -> bool:
    """Whether torchvision's float32 scale gives another size than eager_size: scripted (the float32 scale times
    each side in double precision) or as onnxruntime resizes by it (float32 throughout)."""
    sides = torch.tensor([height, width], dtype=torch.float32)
    scale = torch.min(float(min_size) / sides.min(), float(max_size) / sides.max())
    scripted = tuple(math.floor(side * float(scale)) for side in (height, width))
    in_float32 = tuple((sides * scale).floor().long().tolist())
    return not scripted == in_float32 == eager_size(height, width, min_size, max_size)


def sizes_rounding_apart(min_size: int, max_size: int, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """`count` (height, width) that round apart (see rounds_apart), drawn at random (`seed`) with sides from half
    min_size to twice max_size, within 1024 to 2048 px: photos a detector shrinks and enlarges, of every aspect."""
    generator = torch.Generator().manual_seed(seed)
    high = min(max(2 * max_size, 1024), 2048)
    low = min(max(8, min_size // 2), high)
    found: list[tuple[int, int]] = []
    while len(found) < count:
        height, width = torch.randint(low, high + 1, (2,), generator=generator).tolist()
        if rounds_apart(height, width, min_size, max_size) and (height, width) not in found:
            found.append((height, width))
    return found


class ExactResizeTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform whose scripted and ONNX-traced resize gives the eager output size."""

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None
               ) -> tuple[Tensor, dict[str, Tensor] | None]:
        if not torch.jit.is_scripting() and not torchvision._is_tracing():
            return super().resize(image, target)
        # torchvision's resize step for step, with the output size computed as its eager code does.
        height, width = image.shape[-2:]
        if self.training:
            if self._skip_resize:
                return image, target
            size = self.torch_choice(self.min_size)
        else:
            size = self.min_size[-1]
        fixed_size = self.fixed_size
        if fixed_size is None:
            if torch.jit.is_scripting():
                scale = resize_scale(height, width, size, self.max_size)
                fixed_size = (int(math.floor(width * scale)), int(math.floor(height * scale)))
            else:  # traced: graph operations, so that the file resizes every height and width it is given
                new_height, new_width = traced_size(image, size, self.max_size)
                fixed_size = (new_width, new_height)
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

"""Train-time augmentations applied jointly to image, boxes and masks (torchvision.transforms.v2), built from
an `augment` section (losslab.data.augment_options: the operations, their order, defaults and checks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from losslab.data.augment_options import GEOMETRIC, PHOTOMETRIC, checked_options, enabled

Sample = tuple[torch.Tensor, dict]


# ---------------------------------------------------------------------------------------------- building


class ResizedCrop(v2.RandomResizedCrop):
    """v2.RandomResizedCrop that, without a size, resizes the crop back to the size of its input."""

    def __init__(self, size: list[int] | None, scale: list[float], ratio: list[float]):
        super().__init__(size or [1], scale=tuple(scale), ratio=tuple(ratio))
        self.keep_size = size is None

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        params = super().make_params(flat_inputs)
        params["size"] = list(v2.query_size(flat_inputs)) if self.keep_size else self.size
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, **params, interpolation=self.interpolation,
                                 antialias=self.antialias)


SMOOTH = v2.InterpolationMode.BILINEAR  # for images; v2 warps masks with nearest neighbours whatever this says
BUILDERS: dict[str, Callable[[dict], v2.Transform]] = {
    "resize": lambda o: v2.Resize(o["size"]),
    "smallest_max_size": lambda o: v2.Resize(o["max_size"]),
    "longest_max_size": lambda o: v2.Resize(None, max_size=o["max_size"]),
    "random_sized_crop": lambda o: ResizedCrop(o["size"], o["scale"], o["ratio"]),
    "random_crop": lambda o: v2.RandomCrop(o["size"], pad_if_needed=True),
    "center_crop": lambda o: v2.CenterCrop(o["size"]),
    "shift_scale_rotate": lambda o: v2.RandomAffine(o["degrees"], translate=(o["shift"], o["shift"]),
                                                    scale=(1 - o["scale"], 1 + o["scale"]), interpolation=SMOOTH),
    "rotate": lambda o: v2.RandomRotation(o["degrees"], interpolation=SMOOTH),
    "shear": lambda o: v2.RandomAffine(0, shear=(-o["degrees"], o["degrees"], -o["degrees"], o["degrees"]),
                                       interpolation=SMOOTH),
    "horizontal_flip": lambda o: v2.RandomHorizontalFlip(p=o["p"]),
    "vertical_flip": lambda o: v2.RandomVerticalFlip(p=o["p"]),
    "equalize": lambda o: v2.RandomEqualize(p=o["p"]),
    "color_jitter": lambda o: v2.ColorJitter(o["brightness"], o["contrast"], o["saturation"], o["hue"]),
    "to_gray": lambda o: v2.RandomGrayscale(p=o["p"]),  # keeps three channels
    "blur": lambda o: v2.GaussianBlur(o["kernel_size"], o["sigma"]),
    "gaussian_noise": lambda o: v2.GaussianNoise(o["mean"], o["sigma"]),
}
OWN_PROBABILITY = ("horizontal_flip", "vertical_flip", "equalize", "to_gray")  # the others get v2.RandomApply


def build_operation(name: str, options: dict) -> v2.Transform:
    """The v2 transform of one operation, applied with probability options["p"]."""
    transform = BUILDERS[name](options)
    return transform if name in OWN_PROBABILITY else v2.RandomApply([transform], p=options["p"])


def build_train_transform(options: dict) -> JointTransform | None:
    """The per-image augmentations (geometric, then photometric) of an `augment` section, or None when all are off.

    `options` is the plain dict of an AugmentConfig (OmegaConf.to_container), possibly partial. Mosaic and
    copy-paste are not part of it: they need the dataset (losslab.data.mixing.augmented).
    """
    resolved = checked_options(options)
    geometric = [build_operation(name, resolved[name]) for name in enabled(resolved, GEOMETRIC)]
    photometric = [build_operation(name, resolved[name]) for name in enabled(resolved, PHOTOMETRIC)]
    if not geometric and not photometric:
        return None
    if geometric:
        geometric += sanitizers()
    return JointTransform(v2.Compose(geometric + photometric), geometric=bool(geometric))


def sanitizers() -> list[v2.Transform]:
    """Clamp boxes to the image, then drop those under 1 px with every per-object tensor of the target."""
    return [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1, labels_getter=per_object_tensors)]


# ---------------------------------------------------------------------------------------------- targets


def per_object_keys(target: dict) -> list[str]:
    """Keys of the target's tensors with one row per object besides boxes and masks: labels, iscrowd, area, ..."""
    count = len(target["boxes"])
    return [key for key, value in target.items()
            if key not in ("boxes", "masks", "image_id")
            and isinstance(value, torch.Tensor) and value.ndim >= 1 and len(value) == count]


def per_object_tensors(inputs: Sample) -> tuple[torch.Tensor, ...]:
    """SanitizeBoundingBoxes' labels_getter: every per-object tensor, so all of them keep the boxes' rows."""
    target = inputs[1]
    return tuple(target[key] for key in per_object_keys(target))


def select_objects(target: dict, keep: torch.Tensor) -> dict:
    """The target with only the objects where `keep` (a boolean or index tensor) says so."""
    keys = ["boxes", *per_object_keys(target), *(["masks"] if "masks" in target else [])]
    return {**target, **{key: target[key][keep] for key in keys}}


def mask_extents(masks: torch.Tensor) -> torch.Tensor:
    """XYXY boxes from each (non-empty) mask's first pixel's edge to its last pixel's far edge, as datasets give."""
    boxes = masks_to_boxes(masks).to(torch.float32)  # last-pixel coordinates
    boxes[:, 2:] += 1
    return boxes


def fit_boxes_to_masks(target: dict) -> dict:
    """Drop objects whose mask is empty and make every box its mask's extent."""
    target = select_objects(target, target["masks"].flatten(1).ne(0).any(dim=1))  # a bool index, whatever the dtype
    return {**target, "boxes": mask_extents(target["masks"])}


def wrap(image: torch.Tensor, target: dict) -> tuple[tv_tensors.Image, dict]:
    """The sample as tv_tensors, so v2 transforms move boxes and masks with the pixels."""
    height, width = image.shape[-2:]
    wrapped = dict(target)
    wrapped["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(height, width))
    if "masks" in target:
        wrapped["masks"] = tv_tensors.Mask(target["masks"])
    return tv_tensors.Image(image), wrapped


def unwrap(image: torch.Tensor, target: dict) -> Sample:
    """Plain tensors again: models and collate functions expect no tv_tensors."""
    plain = {key: value.as_subclass(torch.Tensor) if isinstance(value, torch.Tensor) else value
             for key, value in target.items()}
    return image.as_subclass(torch.Tensor), plain


class JointTransform:
    """Applies a v2 transform to a whole sample; after geometric transforms boxes are refitted to masks."""

    def __init__(self, transform: v2.Transform, geometric: bool = False):
        self.transform = transform
        self.geometric = geometric

    def __call__(self, image: torch.Tensor, target: dict) -> Sample:
        image, target = unwrap(*self.transform(*wrap(image, target)))
        if self.geometric and "masks" in target:
            target = fit_boxes_to_masks(target)
        return image, target

    def __repr__(self) -> str:
        return f"JointTransform({self.transform!r}, geometric={self.geometric})"


def sanitize(image: torch.Tensor, target: dict) -> Sample:
    """The sample with boxes clamped, degenerate objects dropped and, with masks, boxes fitted to masks."""
    return JointTransform(v2.Compose(sanitizers()), geometric=True)(image, target)

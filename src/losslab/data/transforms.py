"""Train-time augmentations applied jointly to image, boxes and masks (torchvision.transforms.v2).

Every operation is a small dataclass holding its probability `p` (0 = off) and its parameters;
`AugmentConfig` holds one of each and is the schema of the `augment` config group. The operations
run in a fixed order, which is also the order of `AugmentConfig`'s fields:

1. mixing, which needs other images of the dataset (see losslab.data.mixing): mosaic, copy_paste;
2. geometric, which move boxes and masks with the pixels: resize, smallest_max_size, longest_max_size
   (set the scale), random_sized_crop, random_crop, center_crop (pick the content), shift_scale_rotate,
   rotate, shear (warp it), horizontal_flip, vertical_flip;
3. photometric, which change pixels only: equalize, color_jitter, to_gray, blur, gaussian_noise
   (noise last, so no other operation smooths or stretches it).

After the geometric operations boxes are clamped to the image and degenerate ones are dropped together
with their labels, masks and every other per-object tensor of the target (`iscrowd`, `area`, ...).
With masks, each box then becomes its mask's extent and objects whose mask vanished are dropped: a rotated
or sheared box only gives the box around the rotated box, which is looser than the object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from losslab.errors import LosslabError

Sample = tuple[torch.Tensor, dict]


@dataclass
class Mosaic:
    """Four images in a 2x2 grid around a random centre, on the canvas of the first one."""

    p: float = 0.0
    center: list[float] = field(default_factory=lambda: [0.25, 0.75])  # centre range, fraction of width/height


@dataclass
class CopyPaste:
    """Objects cut out of another image by their masks and pasted on top (needs masks)."""

    p: float = 0.0
    max_objects: int = 3  # pasted objects per image: 1..max_objects
    min_visible: float = 0.3  # covered objects keeping less than this fraction of their mask are dropped


@dataclass
class Resize:
    p: float = 0.0
    size: list[int] | None = None  # [height, width], or [side] for the shorter side; required when p > 0


@dataclass
class SmallestMaxSize:
    p: float = 0.0
    max_size: int | None = None  # the shorter side becomes this many pixels; required when p > 0


@dataclass
class LongestMaxSize:
    p: float = 0.0
    max_size: int | None = None  # the longer side becomes this many pixels; required when p > 0


@dataclass
class RandomSizedCrop:
    p: float = 0.0
    scale: list[float] = field(default_factory=lambda: [0.3, 1.0])  # crop area, fraction of the image's
    ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333])  # crop width / height
    size: list[int] | None = None  # output [height, width]; null keeps the input's size


@dataclass
class RandomCrop:
    p: float = 0.0
    size: list[int] | None = None  # [height, width] or [side]; smaller images are padded; required when p > 0


@dataclass
class CenterCrop:
    p: float = 0.0
    size: list[int] | None = None  # [height, width] or [side]; smaller images are padded; required when p > 0


@dataclass
class ShiftScaleRotate:
    p: float = 0.0
    shift: float = 0.0625  # translation up to this fraction of width and height
    scale: float = 0.1  # zoom in [1 - scale, 1 + scale]
    degrees: float = 15.0  # rotation in [-degrees, degrees]


@dataclass
class Rotate:
    p: float = 0.0
    degrees: float = 15.0  # rotation in [-degrees, degrees], same canvas (corners are cut)


@dataclass
class Shear:
    p: float = 0.0
    degrees: float = 10.0  # shear along x and y, each in [-degrees, degrees]


@dataclass
class HorizontalFlip:
    p: float = 0.0


@dataclass
class VerticalFlip:
    p: float = 0.0


@dataclass
class Equalize:
    p: float = 0.0


@dataclass
class ColorJitter:
    p: float = 0.0
    brightness: float = 0.2  # factor in [1 - brightness, 1 + brightness]
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02  # shift in [-hue, hue], at most 0.5


@dataclass
class ToGray:
    p: float = 0.0


@dataclass
class Blur:
    p: float = 0.0
    kernel_size: int = 5  # odd
    sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # Gaussian sigma range


@dataclass
class GaussianNoise:
    p: float = 0.0
    mean: float = 0.0
    sigma: float = 0.03  # noise standard deviation on [0, 1] pixels; the result is clipped to [0, 1]


@dataclass
class AugmentConfig:
    """Schema of the `augment` group: every operation, off by default, in the order they are applied."""

    mosaic: Mosaic = field(default_factory=Mosaic)
    copy_paste: CopyPaste = field(default_factory=CopyPaste)
    resize: Resize = field(default_factory=Resize)
    smallest_max_size: SmallestMaxSize = field(default_factory=SmallestMaxSize)
    longest_max_size: LongestMaxSize = field(default_factory=LongestMaxSize)
    random_sized_crop: RandomSizedCrop = field(default_factory=RandomSizedCrop)
    random_crop: RandomCrop = field(default_factory=RandomCrop)
    center_crop: CenterCrop = field(default_factory=CenterCrop)
    shift_scale_rotate: ShiftScaleRotate = field(default_factory=ShiftScaleRotate)
    rotate: Rotate = field(default_factory=Rotate)
    shear: Shear = field(default_factory=Shear)
    horizontal_flip: HorizontalFlip = field(default_factory=HorizontalFlip)
    vertical_flip: VerticalFlip = field(default_factory=VerticalFlip)
    equalize: Equalize = field(default_factory=Equalize)
    color_jitter: ColorJitter = field(default_factory=ColorJitter)
    to_gray: ToGray = field(default_factory=ToGray)
    blur: Blur = field(default_factory=Blur)
    gaussian_noise: GaussianNoise = field(default_factory=GaussianNoise)


DEFAULTS: dict[str, dict] = asdict(AugmentConfig())
MIXING = ("mosaic", "copy_paste")
GEOMETRIC = ("resize", "smallest_max_size", "longest_max_size", "random_sized_crop", "random_crop", "center_crop",
             "shift_scale_rotate", "rotate", "shear", "horizontal_flip", "vertical_flip")
PHOTOMETRIC = ("equalize", "color_jitter", "to_gray", "blur", "gaussian_noise")


def resolve_options(options: dict) -> dict[str, dict]:
    """Every operation's full parameters: `options` (possibly partial, e.g. {"rotate": {"p": 1}}) over defaults."""
    return {name: {**defaults, **options.get(name, {})} for name, defaults in DEFAULTS.items()}


def enabled(options: dict, names: tuple[str, ...] = tuple(DEFAULTS)) -> list[str]:
    """The operations among `names` that `options` turns on (p > 0)."""
    resolved = resolve_options(options)
    return [name for name in names if resolved[name]["p"] > 0]


# ---------------------------------------------------------------------------------------------- validation


def _size(value: Any) -> bool:
    return len(value) in (1, 2) and all(isinstance(side, int) and side > 0 for side in value)


def _interval(value: Any, low: float, high: float) -> bool:
    """A [min, max] pair with low < min <= max <= high."""
    return len(value) == 2 and low < value[0] <= value[1] <= high


PROBABILITY = (lambda v: 0 <= v <= 1, "a probability in [0, 1]")
NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
POSITIVE_INT = (lambda v: isinstance(v, int) and v >= 1, "a positive whole number")
SIZE = (lambda v: v is not None and _size(v), "[height, width] or [side] in pixels")

RULES: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "mosaic": {"center": (lambda v: _interval(v, 0, 1) and v[1] < 1, "[min, max] with 0 < min <= max < 1")},
    "copy_paste": {"max_objects": POSITIVE_INT, "min_visible": (lambda v: 0 <= v <= 1, "a fraction in [0, 1]")},
    "resize": {"size": SIZE},
    "smallest_max_size": {"max_size": POSITIVE_INT},
    "longest_max_size": {"max_size": POSITIVE_INT},
    "random_sized_crop": {"scale": (lambda v: _interval(v, 0, 1), "[min, max] with 0 < min <= max <= 1"),
                          "ratio": (lambda v: _interval(v, 0, float("inf")), "[min, max] with 0 < min <= max"),
                          "size": (lambda v: v is None or _size(v), "null or [height, width] or [side] in pixels")},
    "random_crop": {"size": SIZE},
    "center_crop": {"size": SIZE},
    "shift_scale_rotate": {"shift": (lambda v: 0 <= v <= 1, "a fraction in [0, 1]"),
                           "scale": (lambda v: 0 <= v < 1, "a number in [0, 1)"), "degrees": NON_NEGATIVE},
    "rotate": {"degrees": NON_NEGATIVE},
    "shear": {"degrees": (lambda v: 0 <= v < 90, "a number in [0, 90)")},
    "color_jitter": {"brightness": NON_NEGATIVE, "contrast": NON_NEGATIVE, "saturation": NON_NEGATIVE,
                     "hue": (lambda v: 0 <= v <= 0.5, "a number in [0, 0.5]")},
    "blur": {"kernel_size": (lambda v: isinstance(v, int) and v > 0 and v % 2 == 1, "an odd positive whole number"),
             "sigma": (lambda v: _interval(v, 0, float("inf")), "[min, max] with 0 < min <= max")},
    "gaussian_noise": {"mean": (lambda v: isinstance(v, int | float), "a number"), "sigma": NON_NEGATIVE},
}


def _holds(rule: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(rule(value))
    except TypeError:  # a value of the wrong kind (a string, a missing list) fails the rule, not the check
        return False


def validate_augment(options: dict) -> list[str]:
    """Human-readable problems of an `augment` section (plain dict, possibly partial); empty when it is fine.

    The parameters of an operation are checked only when it is on (p > 0): an unused size may stay unset.
    """
    problems = []
    for name, given in options.items():
        if name not in DEFAULTS:
            problems.append(f"augment.{name}: unknown operation; expected one of {', '.join(DEFAULTS)}")
        elif not isinstance(given, dict):
            problems.append(f"augment.{name}={given}: expected its settings, e.g. augment.{name}.p=0.5")
        else:
            problems += _operation_problems(name, {**DEFAULTS[name], **given}, unknown=set(given) - set(DEFAULTS[name]))
    return problems


def _operation_problems(name: str, values: dict, unknown: set[str]) -> list[str]:
    problems = [f"augment.{name}.{key}: unknown parameter; expected one of {', '.join(DEFAULTS[name])}"
                for key in sorted(unknown)]
    if not _holds(PROBABILITY[0], values["p"]):
        return [*problems, f"augment.{name}.p={values['p']}: expected {PROBABILITY[1]}"]
    if values["p"] == 0:
        return problems
    for key, (rule, expected) in RULES.get(name, {}).items():
        if not _holds(rule, values[key]):
            problems.append(f"augment.{name}.{key}={values[key]}: expected {expected}")
    return problems


def checked_options(options: dict) -> dict[str, dict]:
    """`options` resolved over the defaults, or a LosslabError listing every problem."""
    problems = validate_augment(options)
    if problems:
        raise LosslabError("invalid augmentation: " + "; ".join(problems) + ".")
    return resolve_options(options)


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

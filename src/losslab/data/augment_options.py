"""The `augment` config section as plain data (no torch): one small dataclass per operation, their
defaults, order and validation. losslab.data.transforms builds the torchvision.transforms.v2 operations.

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

from losslab.errors import LosslabError


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



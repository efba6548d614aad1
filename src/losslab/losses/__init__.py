"""The configured loss of every component, in the form each architecture's heads call it.

`build_losses` turns the `loss` config (a name and parameters per component, plus weights) into
a `ComponentLosses` of plain callables; `losslab.heads` calls them where torchvision would call
its hard-coded losses. Weights are applied here, so each logged component is the term it adds to
the total (as MMDetection's `loss_weight` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from losslab.errors import LosslabError
from losslab.losses import box, classification, mask, objectness

COMPONENTS = ("classification", "box_regression", "objectness", "rpn_box_regression", "mask")

# Which components each architecture has.
ARCH_COMPONENTS = {
    "faster_rcnn": ("classification", "box_regression", "objectness", "rpn_box_regression"),
    "mask_rcnn": COMPONENTS,
    "retinanet": ("classification", "box_regression"),
}

# config key under `loss` -> component it selects
CONFIG_KEYS = {"cls": "classification", "box": "box_regression", "objectness": "objectness", "mask": "mask"}

# (head family, component) -> {loss name: factory taking the loss's parameters}
FACTORIES: dict[tuple[str, str], dict[str, Callable[..., Callable]]] = {
    ("rcnn", "classification"): {
        "default": lambda: classification.cross_entropy,
        "focal": lambda alpha, gamma: partial(classification.softmax_focal_loss, alpha=alpha, gamma=gamma),
    },
    ("retinanet", "classification"): {
        "default": lambda: classification.sigmoid_focal_sum,
        "focal": lambda alpha, gamma: partial(classification.sigmoid_focal_sum, alpha=alpha, gamma=gamma),
    },
    ("rcnn", "box_regression"): {"default": lambda: box.rcnn_smooth_l1},
    ("retinanet", "box_regression"): {"default": lambda: box.retina_l1},
    ("rcnn", "objectness"): {"default": lambda: objectness.binary_cross_entropy},
    ("rcnn", "rpn_box_regression"): {"default": lambda: box.rpn_smooth_l1},
    ("rcnn", "mask"): {"default": lambda: mask.binary_cross_entropy},
}


@dataclass(frozen=True)
class ComponentLosses:
    """One callable per component (None where the architecture has no such component)."""

    classification: Callable
    box_regression: Callable
    objectness: Callable | None = None
    rpn_box_regression: Callable | None = None
    mask: Callable | None = None


def build_losses(arch: str, choices: dict[str, dict], weights: dict[str, float]) -> ComponentLosses:
    """The losses for `arch` from `choices` ({"cls": {"name": "focal", "alpha": ...}, ...}) and weights.

    Choosing a non-default loss, or a weight other than 1, for a component the architecture does
    not have is an error: it would silently do nothing.
    """
    family = "retinanet" if arch == "retinanet" else "rcnn"
    present = ARCH_COMPONENTS[arch]
    specs = {CONFIG_KEYS[key]: dict(spec) for key, spec in choices.items()}
    specs.setdefault("rpn_box_regression", {"name": "default"})
    for component, spec in specs.items():
        if component not in present and spec.get("name", "default") != "default":
            raise LosslabError(f"loss: {arch} has no {component} component, so loss.{_key(component)}="
                               f"{spec['name']} cannot apply; keep loss.{_key(component)}=default.")
    for component, weight in weights.items():
        if component not in present and weight != 1.0:
            raise LosslabError(f"loss.weights.{component}={weight}: {arch} has no {component} component; "
                               f"its components are {', '.join(present)}.")
    built = {c: _scaled(_make(family, c, specs.get(c, {"name": "default"})), weights.get(c, 1.0)) for c in present}
    return ComponentLosses(**built)


def _make(family: str, component: str, spec: dict) -> Callable:
    name = spec.pop("name", "default")
    options = FACTORIES[(family, component)]
    if name not in options:
        raise LosslabError(f"loss.{_key(component)}={name} is not a {component} loss for this architecture; "
                           f"expected one of {sorted(options)}.")
    return options[name](**spec)


def _key(component: str) -> str:
    return {v: k for k, v in CONFIG_KEYS.items()}.get(component, component)


def _scaled(fn: Callable, weight: float) -> Callable:
    return fn if weight == 1.0 else partial(_weighted, fn, weight)


def _weighted(fn: Callable, weight: float, *args, **kwargs):
    return weight * fn(*args, **kwargs)

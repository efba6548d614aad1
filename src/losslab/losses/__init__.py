"""The catalogue of selectable losses, and `build_losses`: config choices -> the callables the heads call.

Each component's loss is chosen under its config key (`loss.cls`, `loss.box`, `loss.mask`,
`loss.objectness`) by name, with its parameters. `default` means torchvision's own loss for the
architecture. Weights are applied here, so each logged component is the term it adds to the
total (as MMDetection's `loss_weight` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from losslab.errors import LosslabError
from losslab.losses import functional as fn
from losslab.losses.adapters import MaskLoss, RCNNBoxLoss, RetinaNetBoxLoss, rpn_smooth_l1

COMPONENTS = ("classification", "box_regression", "objectness", "rpn_box_regression", "mask")

# Which components each architecture has.
ARCH_COMPONENTS = {
    "faster_rcnn": ("classification", "box_regression", "objectness", "rpn_box_regression"),
    "mask_rcnn": COMPONENTS,
    "retinanet": ("classification", "box_regression"),
}

# config key under `loss` -> the component it selects
CONFIG_KEYS = {"cls": "classification", "box": "box_regression", "objectness": "objectness", "mask": "mask"}


@dataclass(frozen=True)
class Loss:
    """A selectable loss: its function, its parameters with their defaults, and (for
    classification `focal`) the different form RetinaNet's sigmoid head uses."""

    function: Callable
    params: dict[str, Any] = field(default_factory=dict)
    retinanet_function: Callable | None = None
    summary: str = ""


CATALOGUE: dict[str, dict[str, Loss]] = {
    "cls": {
        "ce": Loss(fn.cross_entropy, {"label_smoothing": 0.0}, summary="softmax cross-entropy"),
        "weighted_ce": Loss(fn.cross_entropy, {"weights": "auto", "label_smoothing": 0.0},
                            summary="cross-entropy with per-class weights (a list, or auto: inverse train frequency)"),
        "bce": Loss(fn.binary_cross_entropy, summary="sigmoid binary cross-entropy per class"),
        "focal": Loss(fn.softmax_focal, {"alpha": 0.25, "gamma": 2.0}, retinanet_function=fn.sigmoid_focal,
                      summary="focal loss: softmax form (R-CNN), sigmoid form (RetinaNet)"),
        "hinge": Loss(fn.multi_margin, {"margin": 1.0}, summary="multi-class margin (hinge) loss"),
    },
    "box": {
        "smooth_l1": Loss(fn.smooth_l1, {"beta": 1 / 9}, summary="smooth L1 on box deltas"),
        "l1": Loss(fn.l1, summary="L1 on box deltas"),
        "mse": Loss(fn.mse, summary="squared error on box deltas"),
        "huber": Loss(fn.huber, {"delta": 1.0}, summary="Huber loss on box deltas"),
        "iou": Loss(fn.iou, {"eps": 1e-7}, summary="1 - IoU of decoded boxes"),
        "giou": Loss(fn.giou, {"eps": 1e-7}, summary="generalized IoU loss"),
        "diou": Loss(fn.diou, {"eps": 1e-7}, summary="distance IoU loss"),
        "ciou": Loss(fn.ciou, {"eps": 1e-7}, summary="complete IoU loss"),
    },
    "mask": {
        "bce": Loss(fn.mask_bce, summary="per-pixel binary cross-entropy"),
        "dice": Loss(fn.dice, {"smooth": 1.0}, summary="soft Dice loss per instance"),
        "jaccard": Loss(fn.jaccard, {"smooth": 1.0}, summary="soft IoU (Jaccard) loss per instance"),
        "bce_dice": Loss(fn.bce_dice, {"bce_weight": 0.5, "smooth": 1.0}, summary="BCE and Dice, weighted"),
        "ce_iou": Loss(fn.ce_iou, {"smooth": 1.0}, summary="average of cross-entropy and IoU loss"),
        "focal": Loss(fn.mask_focal, {"alpha": 0.25, "gamma": 2.0}, summary="per-pixel sigmoid focal loss"),
    },
    "objectness": {
        "bce": Loss(fn.objectness_bce, summary="binary cross-entropy"),
        "focal": Loss(fn.objectness_focal, {"alpha": 0.25, "gamma": 2.0}, summary="sigmoid focal loss"),
    },
}

# torchvision's own choice for each (head family, config key): what `default` means.
TORCHVISION_DEFAULTS = {
    ("rcnn", "cls"): ("ce", {}),
    ("retinanet", "cls"): ("focal", {"alpha": 0.25, "gamma": 2.0}),
    ("rcnn", "box"): ("smooth_l1", {"beta": 1 / 9}),
    ("retinanet", "box"): ("l1", {}),
    ("rcnn", "mask"): ("bce", {}),
    ("rcnn", "objectness"): ("bce", {}),
}


@dataclass(frozen=True)
class ComponentLosses:
    """One callable per component, in the form its head calls it (None where the architecture has
    no such component)."""

    classification: Callable
    box_regression: Callable
    objectness: Callable | None = None
    rpn_box_regression: Callable | None = None
    mask: Callable | None = None


def build_losses(arch: str, choices: dict[str, dict], weights: dict[str, float],
                 class_counts: list[int] | None = None) -> ComponentLosses:
    """The losses for `arch` from `choices` ({"cls": {"name": "focal", "alpha": ...}, ...}) and weights.

    `class_counts` (objects per class in the train split) feeds `weighted_ce` with `weights: auto`.
    Choosing a non-default loss, or a weight other than 1, for a component the architecture does
    not have is an error: it would silently do nothing.
    """
    family = "retinanet" if arch == "retinanet" else "rcnn"
    present = ARCH_COMPONENTS[arch]
    for key, spec in choices.items():
        if CONFIG_KEYS[key] not in present and spec.get("name", "default") != "default":
            raise LosslabError(f"loss.{key}={spec['name']}: {arch} has no {CONFIG_KEYS[key]} component; "
                               f"keep loss.{key}=default (its components: {', '.join(present)}).")
    for component, weight in weights.items():
        if component not in present and weight != 1.0:
            raise LosslabError(f"loss.weights.{component}={weight}: {arch} has no {component} component; "
                               f"its components are {', '.join(present)}.")
    built: dict[str, Callable] = {}
    for key, component in CONFIG_KEYS.items():
        if component in present:
            loss = _loss_function(family, key, dict(choices.get(key) or {"name": "default"}), class_counts)
            built[component] = _adapt(family, key, loss)
    if "rpn_box_regression" in present:
        built["rpn_box_regression"] = rpn_smooth_l1
    return ComponentLosses(**{c: _scaled(f, weights.get(c, 1.0)) for c, f in built.items()})


def _loss_function(family: str, key: str, spec: dict, class_counts: list[int] | None) -> Callable:
    """The pure loss `spec` names, its parameters bound (and `reduction` for classification)."""
    name = spec.pop("name", "default")
    if name == "default":
        name, spec = TORCHVISION_DEFAULTS[(family, key)]
    options = CATALOGUE[key]
    if name not in options:
        raise LosslabError(f"loss.{key}={name} is not a {CONFIG_KEYS[key]} loss; expected one of "
                           f"{['default', *options]}.")
    loss = options[name]
    params = {**loss.params, **spec}
    if name == "weighted_ce":
        params["weight"] = class_weights(params.pop("weights"), class_counts)
    function = loss.retinanet_function if family == "retinanet" and loss.retinanet_function else loss.function
    if key == "cls":
        # R-CNN averages over the sampled RoIs; RetinaNet sums over anchors and divides by the
        # number of foreground anchors in the head, as torchvision does.
        params["reduction"] = "sum" if family == "retinanet" else "mean"
    return partial(function, **params)


def class_weights(weights: Any, class_counts: list[int] | None) -> torch.Tensor:
    """Cross-entropy weights over [background, class 1..K]: background 1, classes as given or, for
    `auto`, the inverse of their frequency in the train split."""
    if weights == "auto":
        if class_counts is None:
            raise LosslabError("loss.cls.weights=auto needs the train split's class counts; pass class_counts.")
        per_class = fn.inverse_frequency_weights(class_counts)
    else:
        per_class = torch.as_tensor(list(weights), dtype=torch.float32)
        if class_counts is not None and len(per_class) != len(class_counts):
            raise LosslabError(f"loss.cls.weights has {len(per_class)} values; expected one per class "
                               f"({len(class_counts)}), or auto.")
    return torch.cat([torch.ones(1), per_class])


def _adapt(family: str, key: str, loss: Callable) -> Callable:
    if key == "box":
        return RetinaNetBoxLoss(loss) if family == "retinanet" else RCNNBoxLoss(loss)
    if key == "mask":
        return MaskLoss(loss)
    return loss


def _scaled(function: Callable, weight: float) -> Callable:
    return function if weight == 1.0 else partial(_weighted, function, weight)


def _weighted(function: Callable, weight: float, *args, **kwargs):
    return weight * function(*args, **kwargs)

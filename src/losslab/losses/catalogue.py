"""The catalogue of built-in losses, as plain data (no torch): for every component key, each loss's function,
its parameters with their defaults and meaning, and what `default` means per architecture family.

This is the one place a loss's parameters and defaults are written. The config options `loss/<key>/<name>`
and their schemas are generated from it (losslab.config.schema), and tests check that the functions'
signatures, `train --help` and docs/losses.md agree with it (tests/losses/test_catalogue.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
class Param:
    """One parameter of a loss: its default and a one-line meaning (for help and docs)."""

    default: Any
    doc: str


@dataclass(frozen=True)
class Loss:
    """A selectable loss: the name of its function in losslab.losses.functional, a summary, its parameters,
    and (classification `focal`) the function RetinaNet's sigmoid head uses instead."""

    function: str
    summary: str
    params: dict[str, Param] = field(default_factory=dict)
    retinanet_function: str | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: param.default for name, param in self.params.items()}


SMOOTHING = Param(0.0, "spread this much target mass evenly over all classes (0 = none)")
ALPHA = Param(0.25, "weight of positive terms, negatives get 1 - alpha; -1 turns weighting off")
GAMMA = Param(2.0, "focusing exponent; 0 gives (alpha-weighted) cross-entropy")
EPS = Param(1e-7, "added to denominators for numerical stability (ciou: also to widths and heights)")
SMOOTH = Param(1.0, "added to numerator and denominator, > 0; keeps empty masks finite")

CATALOGUE: dict[str, dict[str, Loss]] = {
    "cls": {
        "ce": Loss("cross_entropy", "softmax cross-entropy", {"label_smoothing": SMOOTHING}),
        "weighted_ce": Loss("cross_entropy", "cross-entropy with per-class weights (a list, or auto: balanced "
                            "inverse train frequency)",
                            {"weights": Param("auto", "auto (scikit-learn's balanced n / (K n_k) over the train "
                                                      "split's objects) or a list with one weight per class"),
                             "label_smoothing": SMOOTHING}),
        "bce": Loss("binary_cross_entropy", "sigmoid binary cross-entropy per class"),
        "focal": Loss("softmax_focal", "focal loss: softmax form (R-CNN), sigmoid form (RetinaNet)",
                      {"alpha": ALPHA, "gamma": GAMMA}, retinanet_function="sigmoid_focal"),
        "hinge": Loss("multi_margin", "multi-class margin (hinge) loss",
                      {"margin": Param(1.0, "margin the true class's score must clear over every other class")}),
    },
    "box": {
        "smooth_l1": Loss("smooth_l1", "smooth L1 on box deltas",
                          {"beta": Param(1 / 9, "where the loss turns from quadratic to linear (torchvision's "
                                                "R-CNN: 1/9)")}),
        "l1": Loss("l1", "L1 on box deltas"),
        "mse": Loss("mse", "squared error on box deltas"),
        "huber": Loss("huber", "Huber loss on box deltas",
                      {"delta": Param(1.0, "where the loss turns from quadratic to linear")}),
        "iou": Loss("iou", "1 - IoU of decoded boxes", {"eps": EPS}),
        "giou": Loss("giou", "generalized IoU loss", {"eps": EPS}),
        "diou": Loss("diou", "distance IoU loss", {"eps": EPS}),
        "ciou": Loss("ciou", "complete IoU loss", {"eps": EPS}),
    },
    "mask": {
        "bce": Loss("mask_bce", "per-pixel binary cross-entropy"),
        "dice": Loss("dice", "soft Dice loss per instance", {"smooth": SMOOTH}),
        "jaccard": Loss("jaccard", "soft IoU (Jaccard) loss per instance", {"smooth": SMOOTH}),
        "bce_dice": Loss("bce_dice", "BCE and Dice, weighted",
                         {"bce_weight": Param(0.5, "share of BCE in the mix; the rest is Dice"), "smooth": SMOOTH}),
        "ce_iou": Loss("ce_iou", "average of cross-entropy and IoU loss", {"smooth": SMOOTH}),
        "focal": Loss("mask_focal", "per-pixel sigmoid focal loss", {"alpha": ALPHA, "gamma": GAMMA}),
    },
    "objectness": {
        "bce": Loss("objectness_bce", "binary cross-entropy"),
        "focal": Loss("objectness_focal", "sigmoid focal loss", {"alpha": ALPHA, "gamma": GAMMA}),
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


def family(arch: str) -> str:
    """The head family whose losses `arch` uses: "retinanet" or "rcnn"."""
    return "retinanet" if arch == "retinanet" else "rcnn"

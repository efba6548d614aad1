"""The catalogue of built-in losses, as plain data (no torch): for every component key, each loss's function,
its parameters with their defaults and meaning, and what `default` means per architecture family. The detection
components' keys are cls, box, objectness, mask and centerness (FCOS); segmentation's per-pixel loss is `pixel` (its
functions live in losslab.losses.segmentation; the auxiliary head's component `aux` uses the same loss).

This is the one place a loss's parameters and defaults are written. The config options `loss/<key>/<name>`
and their schemas are generated from it (losslab.config.schema), and tests check that the functions'
signatures, `train --help` and docs/losses.md agree with it (tests/losses/test_catalogue.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DETECTION_COMPONENTS = ("classification", "box_regression", "objectness", "rpn_box_regression", "mask", "centerness")
# task=segmentation: the main output's per-pixel loss, and the auxiliary head's (DeepLabV3 and FCN with aux_loss).
SEGMENTATION_COMPONENTS = ("pixel", "aux")
COMPONENTS = DETECTION_COMPONENTS + SEGMENTATION_COMPONENTS  # every logged component, in the order logs list them

# Which components each detection architecture has.
ARCH_COMPONENTS = {
    "faster_rcnn": ("classification", "box_regression", "objectness", "rpn_box_regression"),
    "mask_rcnn": ("classification", "box_regression", "objectness", "rpn_box_regression", "mask"),
    "retinanet": ("classification", "box_regression"),
    "fcos": ("classification", "box_regression", "centerness"),
    "ssd": ("classification", "box_regression"),
    "ssdlite": ("classification", "box_regression"),
}

# config key under `loss` -> the component it selects (detection's; segmentation's key `pixel` names its component)
CONFIG_KEYS = {"cls": "classification", "box": "box_regression", "objectness": "objectness", "mask": "mask",
               "centerness": "centerness"}
# The config keys whose classes include the background (class 0): weighted_ce weighs every pixel class. A
# detector's classification weighs the object classes 1..K; the background keeps weight 1.
WITH_BACKGROUND = ("pixel",)


@dataclass(frozen=True)
class Range:
    """The values a numeric loss parameter may take (checked before any training): from `low` (excluded when
    `low_open`) to `high`, or one of `also` (focal's alpha=-1: no weighting); `why` says what a value outside does."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    also: tuple = ()
    why: str = ""

    def holds(self, value: float) -> bool:
        if value in self.also:
            return True
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        """As docs/losses.md writes it: `> 0`, `>= 0`, `in [0, 1]`, `in [0, 1] or -1`."""
        if self.high is None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        return " or ".join([text, *(f"{value:g}" for value in self.also)])


NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1)


@dataclass(frozen=True)
class Param:
    """One parameter of a loss: its default, a one-line meaning (for help and docs) and, for a number, the range
    of values it may take."""

    default: Any
    doc: str
    range: Range | None = None


@dataclass(frozen=True)
class Loss:
    """A selectable loss: the name of its function in losslab.losses.<module>, a summary, its parameters,
    and (classification `focal`) the function the sigmoid heads (RetinaNet, FCOS) use instead."""

    function: str
    summary: str
    params: dict[str, Param] = field(default_factory=dict)
    retinanet_function: str | None = None
    module: str = "functional"  # the mask head's: "mask_losses"; segmentation's per-pixel losses: "segmentation"

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: param.default for name, param in self.params.items()}


SMOOTHING = Param(0.0, "spread this much target mass evenly over all classes (0 = none)", FRACTION)
ALPHA = Param(0.25, "weight of positive terms, negatives get 1 - alpha; -1 turns weighting off",
              Range(0, 1, also=(-1,)))
GAMMA = Param(2.0, "focusing exponent; 0 gives (alpha-weighted) cross-entropy", NON_NEGATIVE)
EPS = Param(1e-7, "added to denominators for numerical stability (ciou: also to widths and heights)", NON_NEGATIVE)
SMOOTH = Param(1.0, "added to numerator and denominator, > 0; keeps empty masks finite",
               Range(0, low_open=True, why="with smooth = 0 an empty target mask gives 0/0 (NaN) for an empty "
                     "prediction and the largest loss, 1, for any other; a small value such as 1e-6 keeps the loss "
                     "close to exact Dice / IoU on the other instances"))

# Per-pixel losses of task=segmentation: `fn(logits [B, C, H, W], target [B, H, W] int64, **params)`, C classes with
# background 0 and `ignore_index` marking pixels that count nowhere. Dice, Jaccard, Tversky and Lovasz are
# segmentation_models_pytorch's (smp.losses), multi-class: a class without a target pixel in the batch adds 0.
# The target index of pixels that count in no loss and no metric: the data's void label (VOC's object borders, COCO's
# crowds) and the padding of a batch. Every module that knows it imports it from here.
IGNORE_INDEX = 255
IGNORE = Param(IGNORE_INDEX, "pixels with this target index count nowhere (255: the data's void label, VOC's borders)")
PIXEL_SMOOTHING = Param(0.0, "spread this much target mass evenly over all classes (0 = none)", FRACTION)
PIXEL_CLASSES = Param(None, "the class indices the loss averages over (null = every class, background included)")
PIXEL_SMOOTH = Param(0.0, "added to numerator and denominator of each class's score (smp's default 0)", NON_NEGATIVE)
LOG_LOSS = Param(False, "true: -log(score) instead of 1 - score")
PIXEL_ALPHA = Param(None, "weight of each class's positive pixels, 1 - alpha of its negatives; null: no weighting "
                          "(smp's default)", FRACTION)

CATALOGUE: dict[str, dict[str, Loss]] = {
    "cls": {
        "ce": Loss("cross_entropy", "softmax cross-entropy", {"label_smoothing": SMOOTHING}),
        "weighted_ce": Loss("cross_entropy", "cross-entropy with per-class weights (a list, or auto: balanced "
                            "inverse train frequency)",
                            {"weights": Param("auto", "auto (scikit-learn's balanced n / (K n_k) over the train "
                                                      "split's objects) or a list with one weight per class"),
                             "label_smoothing": SMOOTHING}),
        "bce": Loss("binary_cross_entropy", "sigmoid binary cross-entropy per class"),
        "focal": Loss("softmax_focal", "focal loss: softmax form (R-CNN, SSD), sigmoid form (RetinaNet, FCOS)",
                      {"alpha": ALPHA, "gamma": GAMMA}, retinanet_function="sigmoid_focal"),
        "hinge": Loss("multi_margin", "multi-class margin (hinge) loss",
                      {"margin": Param(1.0, "margin the true class's score must clear over every other class",
                                         NON_NEGATIVE)}),
    },
    "box": {
        "smooth_l1": Loss("smooth_l1", "smooth L1 on box deltas",
                          {"beta": Param(1 / 9, "where the loss turns from quadratic to linear (torchvision's "
                                                "R-CNN: 1/9)", NON_NEGATIVE)}),
        "l1": Loss("l1", "L1 on box deltas"),
        "mse": Loss("mse", "squared error on box deltas"),
        "huber": Loss("huber", "Huber loss on box deltas",
                      {"delta": Param(1.0, "where the loss turns from quadratic to linear", POSITIVE)}),
        "iou": Loss("iou", "1 - IoU of decoded boxes", {"eps": EPS}),
        "giou": Loss("giou", "generalized IoU loss", {"eps": EPS}),
        "diou": Loss("diou", "distance IoU loss", {"eps": EPS}),
        "ciou": Loss("ciou", "complete IoU loss", {"eps": EPS}),
    },
    "mask": {
        "bce": Loss("mask_bce", "per-pixel binary cross-entropy", module="mask_losses"),
        "dice": Loss("dice", "soft Dice loss per instance", {"smooth": SMOOTH}, module="mask_losses"),
        "jaccard": Loss("jaccard", "soft IoU (Jaccard) loss per instance", {"smooth": SMOOTH}, module="mask_losses"),
        "bce_dice": Loss("bce_dice", "BCE and Dice, weighted",
                         {"bce_weight": Param(0.5, "share of BCE in the mix; the rest is Dice", FRACTION),
                          "smooth": SMOOTH},
                         module="mask_losses"),
        "ce_iou": Loss("ce_iou", "average of cross-entropy and IoU loss", {"smooth": SMOOTH}, module="mask_losses"),
        "focal": Loss("mask_focal", "per-pixel sigmoid focal loss", {"alpha": ALPHA, "gamma": GAMMA},
                      module="mask_losses"),
    },
    "objectness": {
        "bce": Loss("objectness_bce", "binary cross-entropy"),
        "focal": Loss("objectness_focal", "sigmoid focal loss", {"alpha": ALPHA, "gamma": GAMMA}),
    },
    # FCOS's centre-ness: one logit per foreground location against a soft target in [0, 1], summed.
    "centerness": {
        "bce": Loss("centerness_bce", "binary cross-entropy against the soft centre-ness target", module="centerness"),
        "focal": Loss("centerness_focal", "sigmoid focal loss against the soft centre-ness target",
                      {"alpha": ALPHA, "gamma": GAMMA}, module="centerness"),
        "l1": Loss("centerness_l1", "L1 between sigmoid(logit) and the centre-ness target", module="centerness"),
    },
    "pixel": {
        "ce": Loss("cross_entropy", "softmax cross-entropy per pixel, averaged over the counted pixels",
                   {"label_smoothing": PIXEL_SMOOTHING, "ignore_index": IGNORE}, module="segmentation"),
        "weighted_ce": Loss("cross_entropy", "cross-entropy with a weight per class (a list, or auto: balanced "
                            "over the train split's pixels)",
                            {"weights": Param("auto", "auto (scikit-learn's balanced n / (K n_k) over the train "
                                                      "split's pixels of each class, background included) or one "
                                                      "weight per class"),
                             "label_smoothing": PIXEL_SMOOTHING, "ignore_index": IGNORE}, module="segmentation"),
        "focal": Loss("focal", "sigmoid focal loss of each class against the rest, averaged over pixels and classes "
                      "(smp's FocalLoss)", {"alpha": PIXEL_ALPHA, "gamma": GAMMA, "ignore_index": IGNORE},
                      module="segmentation"),
        "dice": Loss("dice", "soft Dice loss 1 - 2|P n T| / (|P| + |T|) per class, averaged (smp's DiceLoss)",
                     {"smooth": PIXEL_SMOOTH, "classes": PIXEL_CLASSES, "log_loss": LOG_LOSS, "ignore_index": IGNORE},
                     module="segmentation"),
        "jaccard": Loss("jaccard", "soft IoU loss 1 - |P n T| / |P u T| per class, averaged (smp's JaccardLoss)",
                        {"smooth": PIXEL_SMOOTH, "classes": PIXEL_CLASSES, "log_loss": LOG_LOSS,
                         "ignore_index": IGNORE}, module="segmentation"),
        "ce_iou": Loss("ce_iou", "CrossEntropyIoULoss2D: the average of cross-entropy and the Jaccard loss",
                       {"smooth": PIXEL_SMOOTH, "classes": PIXEL_CLASSES, "ignore_index": IGNORE},
                       module="segmentation"),
        "tversky": Loss("tversky", "Tversky loss: Jaccard/Dice with false positives weighted alpha, false negatives "
                        "beta (smp's TverskyLoss)",
                        {"alpha": Param(0.5, "weight of false positives", NON_NEGATIVE),
                         "beta": Param(0.5, "weight of false negatives (beta > alpha favours recall)", NON_NEGATIVE),
                         "gamma": Param(1.0, "focal exponent on each class's loss (1 = none)", POSITIVE),
                         "smooth": PIXEL_SMOOTH,
                         "classes": PIXEL_CLASSES, "ignore_index": IGNORE}, module="segmentation"),
        "lovasz": Loss("lovasz", "Lovasz-softmax: a convex surrogate of the IoU of each class (smp's LovaszLoss)",
                       {"per_image": Param(False, "true: per image, then averaged; false: over the whole batch"),
                        "ignore_index": IGNORE}, module="segmentation"),
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
    ("fcos", "cls"): ("focal", {"alpha": 0.25, "gamma": 2.0}),
    ("fcos", "box"): ("giou", {"eps": 1e-7}),
    ("fcos", "centerness"): ("bce", {}),
    ("ssd", "cls"): ("ce", {}),  # on the hard-mined anchors (losslab.modeling.dense_heads.LossSSD)
    ("ssd", "box"): ("smooth_l1", {"beta": 1.0}),
    ("segmenter", "pixel"): ("ce", {}),  # torchvision's references/segmentation: cross-entropy, 255 ignored
}


# The head families whose classification is one sigmoid per class (focal picks its sigmoid form), and those whose
# classification loss is summed over rows (anchors or locations) and divided by the foreground count in the head.
SIGMOID_FAMILIES = ("retinanet", "fcos")
SUMMING_FAMILIES = ("retinanet", "fcos", "ssd")
FAMILIES = {"retinanet": "retinanet", "fcos": "fcos", "ssd": "ssd", "ssdlite": "ssd"}


def family(arch: str) -> str:
    """The head family whose losses `arch` uses: "rcnn", "retinanet", "fcos" or "ssd" (SSD300 and SSDlite)."""
    return FAMILIES.get(arch, "rcnn")

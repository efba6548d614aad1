"""`build_segmentation_losses`: a task=segmentation `loss` section's choices (plain values) -> the callables the
segmenter calls: `pixel` on the main output and `aux` (the same loss) on the auxiliary head's, each scaled by its
weight so that each logged component is the term it adds to the total."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from losslab.losses.components import component_loss, scaled

KEY = "pixel"  # the config key of the per-pixel loss: loss.pixel, loss/pixel=NAME
FAMILY = "segmenter"  # the head family whose `default` loss catalogue.TORCHVISION_DEFAULTS names


@dataclass(frozen=True)
class SegmentationLosses:
    """The per-pixel loss of the main output and of the auxiliary head (None: the model has none, or the
    reference loss, which scores the main output only)."""

    pixel: Callable
    aux: Callable | None = None


def segmentation_loss_choices(loss: dict) -> tuple[dict[str, dict], dict[str, float]]:
    """A plain task=segmentation `loss` section as ({"pixel": choice}, {component: weight})."""
    return {KEY: loss[KEY]}, loss["weights"]


def build_segmentation_losses(choices: dict[str, dict], weights: dict[str, float], aux: bool,
                              class_counts: list[int] | None = None, num_classes: int | None = None
                              ) -> SegmentationLosses:
    """The losses `choices` ({"pixel": {"name": "dice", ...}}) name, weighted by `weights` ({"pixel": 1.0,
    "aux": 0.5}); `aux` whether the model has an auxiliary head (without one, loss.weights.aux has nothing to
    weigh). `class_counts` (pixels of each class in the train split) feeds weighted_ce with `weights: auto`;
    `num_classes` (pixel classes, background included) is what a list of weights is checked against."""
    loss = component_loss(KEY, choices.get(KEY) or {"name": "default"}, FAMILY, class_counts, num_classes)
    return SegmentationLosses(pixel=scaled(loss, weights.get("pixel", 1.0)),
                              aux=scaled(loss, weights.get("aux", 1.0)) if aux else None)


def reference_losses() -> SegmentationLosses:
    """val/ref_loss of task=segmentation: plain cross-entropy of the main output, whatever the run trains with, so
    runs with other losses, aux weights or models compare on it."""
    return SegmentationLosses(pixel=component_loss(KEY, {"name": "ce"}, FAMILY))

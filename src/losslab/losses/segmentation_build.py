"""`build_segmentation_losses`: a task=segmentation `loss` section's choices (plain values) -> the callables the
segmenter calls: `pixel` on the main output and `aux` (the same loss) on the auxiliary head's, each scaled by its
weight so that each logged component is the term it adds to the total."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from losslab.errors import LosslabError
from losslab.losses.build import scaled
from losslab.losses.catalogue import CATALOGUE, TORCHVISION_DEFAULTS
from losslab.losses.functional import balanced_class_weights
from losslab.losses.user import UserLoss, check_user_loss, user_loss

KEY = "pixel"  # the config key of the per-pixel loss: loss.pixel, loss/pixel=NAME


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
                              class_counts: list[int] | None = None) -> SegmentationLosses:
    """The losses `choices` ({"pixel": {"name": "dice", ...}}) name, weighted by `weights` ({"pixel": 1.0,
    "aux": 0.5}); `aux` whether the model has an auxiliary head (without one, loss.weights.aux has nothing to
    weigh). `class_counts` (pixels of each class in the train split) feeds weighted_ce with `weights: auto`."""
    loss = pixel_loss(dict(choices.get(KEY) or {"name": "default"}), class_counts)
    return SegmentationLosses(pixel=scaled(loss, weights.get("pixel", 1.0)),
                              aux=scaled(loss, weights.get("aux", 1.0)) if aux else None)


def reference_losses() -> SegmentationLosses:
    """val/ref_loss of task=segmentation: plain cross-entropy of the main output, whatever the run trains with, so
    runs with other losses, aux weights or models compare on it."""
    return SegmentationLosses(pixel=pixel_loss({"name": "ce"}, None))


def pixel_loss(spec: dict, class_counts: list[int] | None) -> Callable:
    """The per-pixel loss `spec` names ({"name": ..., params}) with its parameters bound; `custom`: the user's own
    (`_target_`, losslab.losses.user)."""
    name = spec.pop("name", "default")
    if name == "custom":
        return user_loss(KEY, "segmentation", spec)
    if name == "default":
        name, spec = TORCHVISION_DEFAULTS[("segmentation", KEY)]
    options = CATALOGUE[KEY]
    if name not in options:
        raise LosslabError(f"loss.{KEY}={name} is not a per-pixel loss; expected one of {['default', *options]}.")
    loss = options[name]
    params = {**loss.defaults, **spec}
    if name == "weighted_ce":
        params["weight"] = pixel_class_weights(params.pop("weights"), class_counts)
    return partial(getattr(importlib.import_module(f"losslab.losses.{loss.module}"), loss.function), **params)


def check_user_losses(every_choice: list[dict[str, dict]], num_classes: int, device: torch.device
                      ) -> list[UserLoss]:
    """Import every distinct user loss (`custom`) of these per-pixel choices (one per loss phase) and call it on a
    synthetic batch of `num_classes` pixel classes on `device`; the losses checked (a LosslabError if one fails)."""
    checked, seen = [], []
    for choices in every_choice:
        spec = choices.get(KEY) or {}
        if spec.get("name") == "custom" and spec not in seen:
            seen.append(spec)
            loss = user_loss(KEY, "segmentation", spec)
            check_user_loss(loss, num_classes, device)
            checked.append(loss)
    return checked


def needs_pixel_counts(choices: list[dict[str, dict]]) -> bool:
    """Whether any of these loss choices (one per phase) is weighted_ce with automatic weights."""
    return any(c.get(KEY, {}).get("name") == "weighted_ce" and c[KEY].get("weights", "auto") == "auto"
               for c in choices)


def pixel_class_weights(weights, class_counts: list[int] | None) -> torch.Tensor:
    """Cross-entropy weights of classes 0..K-1 (background included): as given, or for `auto` scikit-learn's
    "balanced" weights of the train split's pixel counts, n / (K n_k) (`functional.balanced_class_weights`: every
    class then carries the same total weight, and the weights average 1 per pixel)."""
    if weights == "auto":
        if class_counts is None:
            raise LosslabError("loss.pixel.weights=auto needs the train split's pixel counts; pass class_counts.")
        return balanced_class_weights(class_counts)
    per_class = torch.as_tensor(list(weights), dtype=torch.float32)
    if class_counts is not None and len(per_class) != len(class_counts):
        raise LosslabError(f"loss.pixel.weights has {len(per_class)} values; expected one per class, background "
                           f"first ({len(class_counts)}), or auto.")
    return per_class

"""The one builder of a component's loss, shared by every task: a choice of the `loss` config section (plain
values: {"name": "focal", "alpha": ...}) -> the pure loss function with its parameters bound, checked against the
catalogue. What a task adds (detection's head adapters, segmentation's auxiliary head) is built on top of it in
losslab.losses.build and losslab.losses.segmentation_build.

`default` means torchvision's own loss for the head family (catalogue.TORCHVISION_DEFAULTS); `custom` the user's
own, named by `_target_` (losslab.losses.user).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor

from losslab.errors import LosslabError
from losslab.losses.catalogue import (
    CATALOGUE,
    SIGMOID_FAMILIES,
    SUMMING_FAMILIES,
    TORCHVISION_DEFAULTS,
    WITH_BACKGROUND,
    Loss,
)
from losslab.losses.user import COMPONENT_NAMES, UserLoss, check_user_loss, user_loss


def component_loss(key: str, spec: dict, family: str, class_counts: list[int] | None = None,
                   num_classes: int | None = None) -> Callable:
    """The pure loss `spec` names for config key `key` (cls, box, objectness, mask, centerness, pixel) of head
    `family` (rcnn, retinanet, fcos, ssd, segmenter), its parameters bound (and `reduction` for classification).

    Every check a choice needs is made here, before any training: the name is the key's, every parameter is
    the loss's, every number is in its range, and weighted_ce's weights fit the classes (`class_counts`: the train
    split's count of each class, for `weights: auto`; `num_classes`: what a list of weights is checked against).
    """
    spec = dict(spec)
    name = spec.pop("name", "default")
    if name == "custom":
        return user_loss(key, family, spec)
    if name == "default":
        name, spec = TORCHVISION_DEFAULTS[(family, key)]
    loss, params = checked_parameters(key, name, spec)
    if "weights" in params:
        params["weight"] = class_weights(key, params.pop("weights"), class_counts, num_classes)
    sigmoid = family in SIGMOID_FAMILIES and loss.retinanet_function
    function_name = loss.retinanet_function if sigmoid else loss.function
    function = getattr(importlib.import_module(f"losslab.losses.{loss.module}"), function_name)
    if key == "cls":
        # R-CNN averages over the sampled RoIs; RetinaNet, FCOS and SSD sum over anchors (SSD: the mined ones) and
        # divide by the number of foreground anchors in the head, as torchvision does.
        params["reduction"] = "sum" if family in SUMMING_FAMILIES else "mean"
    return partial(function, **params)


def checked_parameters(key: str, name: str, spec: dict) -> tuple[Loss, dict]:
    """The catalogue's loss `name` of config key `key` and its parameters (its defaults updated by `spec`), once
    the name is the key's, every parameter is the loss's, and every number is in the catalogue's range; a
    LosslabError naming the key otherwise. Validation calls it for every choice of a config, so a wrong parameter of
    a loss phase that starts late fails before anything runs."""
    options = CATALOGUE[key]
    if name not in options:
        raise LosslabError(f"loss.{key}={name} is not a {COMPONENT_NAMES[key]} loss; expected one of "
                           f"{['default', *options, 'custom']}.")
    loss = options[name]
    unknown = sorted(set(spec) - set(loss.defaults))
    if unknown:
        raise LosslabError(f"loss.{key}={name} has no parameter {', '.join(unknown)}; its parameters are "
                           f"{', '.join(loss.defaults) or 'none'} (a loss of your own: loss/{key}=custom).")
    params = {**loss.defaults, **spec}
    for param, value in params.items():  # refused now rather than at the first batch
        allowed = loss.params[param].range
        if allowed is None or (value is None and loss.params[param].default is None):
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and allowed.holds(value)):
            why = f": {allowed.why}" if allowed.why else ""
            raise LosslabError(f"loss.{key}.{param}={value} ({name}): {param} must be {'a number ' * (not number)}"
                               f"{allowed}{why}.")
    return loss, params


def class_weights(key: str, weights: Any, class_counts: list[int] | None, num_classes: int | None = None
                  ) -> torch.Tensor:
    """weighted_ce's cross-entropy weights for config key `key`, as given or, for `auto`, scikit-learn's
    "balanced" weights n / (K n_k) of the train split's counts (`balanced_class_weights`: they average 1
    per counted object or pixel).

    `class_counts` and a list of weights cover the key's classes: the object classes 1..K for `cls` (the
    background then gets weight 1 in front, so the balance between background and objects stays that of plain
    cross-entropy), every pixel class 0..K-1 for `pixel`. A list must hold one weight >= 0 per class (K:
    `num_classes`, or the length of `class_counts`), checked when K is known.
    """
    background = [torch.ones(1)] if key not in WITH_BACKGROUND else []
    noun = "pixel class" if key in WITH_BACKGROUND else "object class"
    if weights == "auto":
        if class_counts is None:
            raise LosslabError(f"loss.{key}.weights=auto needs the train split's class counts; pass class_counts.")
        return torch.cat([*background, balanced_class_weights(class_counts)])
    expected = len(class_counts) if class_counts is not None else num_classes
    if not isinstance(weights, list | tuple) or not all(isinstance(w, int | float) for w in weights):
        raise LosslabError(f"loss.{key}.weights={weights}: expected auto or a list of numbers, one per {noun}"
                           f"{f' ({expected})' if expected is not None else ''}.")
    if expected is not None and len(weights) != expected:
        order = "background not counted" if background else "background first"
        raise LosslabError(f"loss.{key}.weights has {len(weights)} values ({list(weights)}); expected one per {noun} "
                           f"of the data ({expected}, {order}), or auto.")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise LosslabError(f"loss.{key}.weights={list(weights)}: expected weights >= 0 (a negative weight rewards "
                           "misclassifying that class), or auto.")
    return torch.cat([*background, torch.as_tensor(list(weights), dtype=torch.float32)])


def needs_class_counts(every_choice: list[dict[str, dict]]) -> bool:
    """Whether any of these loss choices (one set per loss phase) is weighted_ce with automatic weights."""
    return any(spec.get("name") == "weighted_ce" and spec.get("weights", "auto") == "auto"
               for choices in every_choice for spec in choices.values())


def check_user_losses(keys: tuple[str, ...], family: str, every_choice: list[dict[str, dict]], num_classes: int,
                      device: torch.device) -> list[UserLoss]:
    """Import every distinct user loss (`custom`) among these choices (one set per loss phase) of the config
    `keys` a model has, and call it on a synthetic batch of its component's shapes for `num_classes` classes on
    `device`; the losses checked. A LosslabError naming the component and target if one fails."""
    checked: list[UserLoss] = []
    seen: list[tuple[str, dict]] = []
    for choices in every_choice:
        for key, spec in choices.items():
            if spec.get("name") != "custom" or key not in keys or (key, spec) in seen:
                continue
            seen.append((key, spec))
            loss = user_loss(key, family, spec)
            check_user_loss(loss, num_classes, device)
            checked.append(loss)
    return checked


def scaled(function: Callable, weight: float) -> Callable:
    """`function` with its result multiplied by `weight` (itself for 1)."""
    return function if weight == 1.0 else partial(_weighted, function, weight)


def _weighted(function: Callable, weight: float, *args, **kwargs):
    return weight * function(*args, **kwargs)


def balanced_class_weights(counts: list[int] | Tensor) -> Tensor:
    """scikit-learn's "balanced" weights: w_k = n / (K n_k) for each class k with n_k > 0 objects, n the objects
    of all classes and K the number of classes that have any (e.g. [10, 30, 60] -> [10/3, 10/9, 5/9]).

    Every class then carries the same total weight n / K, and the weights average 1 per object, so objects as a whole
    weigh what they do unweighted (the background's weight, 1, keeps its balance with them). A class with no objects
    (which scikit-learn refuses) gets 1: it is never a training target, so its weight only scales its objects'
    terms in a validation loss; the caller says so. With no objects at all every weight is 1. Returns float32 [K].
    """
    counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if (counts < 0).any():
        raise ValueError(f"class counts must be >= 0, got {counts.tolist()}")
    present = counts > 0
    if not present.any():
        return torch.ones(counts.numel(), dtype=torch.float32)
    balanced = counts.sum() / (present.sum() * counts.clamp(min=1))
    return torch.where(present, balanced, 1.0).to(torch.float32)

"""`build_losses`: the `loss` config section's choices (plain values) -> the callables the heads call.

Each component's loss is chosen under its config key (`loss.cls`, `loss.box`, `loss.mask`,
`loss.objectness`) by name, with its parameters (losslab.losses.catalogue). `default` means
torchvision's own loss for the architecture; `custom` the user's own, named by `_target_`
(losslab.losses.user). Weights are applied here, so each logged component is
the term it adds to the total (as MMDetection's `loss_weight` does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from losslab.errors import LosslabError
from losslab.losses import functional as fn
from losslab.losses.adapters import MaskLoss, RCNNBoxLoss, RetinaNetBoxLoss, rpn_smooth_l1
from losslab.losses.catalogue import ARCH_COMPONENTS, CATALOGUE, CONFIG_KEYS, TORCHVISION_DEFAULTS, family
from losslab.losses.user import UserLoss, check_user_loss, user_loss


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
                 class_counts: list[int] | None = None, num_classes: int | None = None) -> ComponentLosses:
    """The losses for `arch` from `choices` ({"cls": {"name": "focal", "alpha": ...}, ...}) and weights.

    `class_counts` (objects per class in the train split) feeds `weighted_ce` with `weights: auto`;
    `num_classes` (object classes, background excluded) is what a list of weights is checked against.
    Choosing a non-default loss, or a weight other than 1, for a component the architecture does
    not have is an error: it would silently do nothing.
    """
    head_family = family(arch)
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
            loss = _loss_function(head_family, key, dict(choices.get(key) or {"name": "default"}), class_counts,
                                  num_classes)
            built[component] = _adapt(head_family, key, loss)
    if "rpn_box_regression" in present:
        built["rpn_box_regression"] = rpn_smooth_l1
    return ComponentLosses(**{c: scaled(f, weights.get(c, 1.0)) for c, f in built.items()})


def needs_class_counts(choices: list[dict[str, dict]]) -> bool:
    """Whether any of these loss choices (one per phase) is weighted_ce with automatic weights."""
    return any(c.get("cls", {}).get("name") == "weighted_ce" and c["cls"].get("weights", "auto") == "auto"
               for c in choices)


def check_user_losses(arch: str, every_choice: list[dict[str, dict]], num_classes: int, device: torch.device
                      ) -> list[UserLoss]:
    """Import every distinct user loss (`custom`) among these choices (one set per loss phase) and call it on a
    synthetic batch of its component's shapes for `num_classes` object classes on `device`; the losses checked.
    A LosslabError naming the component and target if one fails."""
    checked: list[UserLoss] = []
    seen: list[tuple[str, dict]] = []
    for choices in every_choice:
        for key, spec in choices.items():
            if spec.get("name") != "custom" or CONFIG_KEYS[key] not in ARCH_COMPONENTS[arch] or (key, spec) in seen:
                continue
            seen.append((key, spec))
            loss = user_loss(key, family(arch), spec)
            check_user_loss(loss, num_classes, device)
            checked.append(loss)
    return checked


def loss_choices(loss: dict) -> tuple[dict[str, dict], dict[str, float]]:
    """A plain `loss` config section as ({config key: choice}, {component: weight})."""
    return {key: loss[key] for key in CONFIG_KEYS}, loss["weights"]


def _loss_function(family: str, key: str, spec: dict, class_counts: list[int] | None,
                   num_classes: int | None) -> Callable:
    """The pure loss `spec` names, its parameters bound (and `reduction` for classification)."""
    name = spec.pop("name", "default")
    if name == "custom":
        return user_loss(key, family, spec)
    if name == "default":
        name, spec = TORCHVISION_DEFAULTS[(family, key)]
    options = CATALOGUE[key]
    if name not in options:
        raise LosslabError(f"loss.{key}={name} is not a {CONFIG_KEYS[key]} loss; expected one of "
                           f"{['default', *options, 'custom']}.")
    loss = options[name]
    unknown = sorted(set(spec) - set(loss.defaults))
    if unknown:
        raise LosslabError(f"loss.{key}={name} has no parameter {', '.join(unknown)}; its parameters are "
                           f"{', '.join(loss.defaults) or 'none'} (a loss of your own: loss/{key}=custom).")
    params = {**loss.defaults, **spec}
    if "smooth" in params:  # refused now rather than at the first batch
        try:
            fn.check_smooth(params["smooth"])
        except ValueError as error:
            raise LosslabError(f"loss.{key}.smooth={params['smooth']} ({name}): {error}.") from None
    if name == "weighted_ce":
        params["weight"] = class_weights(params.pop("weights"), class_counts, num_classes)
    function_name = loss.retinanet_function if family == "retinanet" and loss.retinanet_function else loss.function
    function = getattr(fn, function_name)
    if key == "cls":
        # R-CNN averages over the sampled RoIs; RetinaNet sums over anchors and divides by the
        # number of foreground anchors in the head, as torchvision does.
        params["reduction"] = "sum" if family == "retinanet" else "mean"
    return partial(function, **params)


def class_weights(weights: Any, class_counts: list[int] | None, num_classes: int | None = None) -> torch.Tensor:
    """Cross-entropy weights over [background, class 1..K]: background 1, classes as given or, for `auto`,
    scikit-learn's "balanced" weights of their train split counts (`functional.balanced_class_weights`: they average
    1 per object, so the balance between background and objects stays that of plain cross-entropy). A list must hold
    one weight >= 0 per class (K: `num_classes`, or the length of `class_counts`), checked when K is known."""
    if weights == "auto":
        if class_counts is None:
            raise LosslabError("loss.cls.weights=auto needs the train split's class counts; pass class_counts.")
        return torch.cat([torch.ones(1), fn.balanced_class_weights(class_counts)])
    expected = len(class_counts) if class_counts is not None else num_classes
    if not isinstance(weights, list | tuple) or not all(isinstance(w, int | float) for w in weights):
        raise LosslabError(f"loss.cls.weights={weights}: expected auto or a list of numbers, one per object class"
                           f"{f' ({expected})' if expected is not None else ''}.")
    if expected is not None and len(weights) != expected:
        raise LosslabError(f"loss.cls.weights has {len(weights)} values ({list(weights)}); expected one per object "
                           f"class of the data ({expected}, background not counted), or auto.")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise LosslabError(f"loss.cls.weights={list(weights)}: expected weights >= 0 (a negative weight rewards "
                           "misclassifying that class), or auto.")
    return torch.cat([torch.ones(1), torch.as_tensor(list(weights), dtype=torch.float32)])


def _adapt(family: str, key: str, loss: Callable) -> Callable:
    if key == "box":
        return RetinaNetBoxLoss(loss) if family == "retinanet" else RCNNBoxLoss(loss)
    if key == "mask":
        return MaskLoss(loss)
    return loss


def scaled(function: Callable, weight: float) -> Callable:
    """`function` with its result multiplied by `weight` (itself for 1)."""
    return function if weight == 1.0 else partial(_weighted, function, weight)


def _weighted(function: Callable, weight: float, *args, **kwargs):
    return weight * function(*args, **kwargs)

"""`build_losses`: a detector's `loss` config section's choices (plain values) -> the callables its heads call.

Each component's loss is chosen under its config key (`loss.cls`, `loss.box`, `loss.mask`,
`loss.objectness`, `loss.centerness`) and built by the shared builder (losslab.losses.components), then adapted to
the form its head calls. Weights are applied here, so each logged component is the term it adds to the total (as
MMDetection's `loss_weight` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from losslab.errors import LosslabError
from losslab.losses.adapters import AnchorBoxLoss, MaskLoss, RCNNBoxLoss, rpn_smooth_l1
from losslab.losses.catalogue import ARCH_COMPONENTS, CONFIG_KEYS, family
from losslab.losses.components import component_loss, scaled


@dataclass(frozen=True)
class ComponentLosses:
    """One callable per component, in the form its head calls it (None where the architecture has
    no such component)."""

    classification: Callable
    box_regression: Callable
    objectness: Callable | None = None
    rpn_box_regression: Callable | None = None
    mask: Callable | None = None
    centerness: Callable | None = None


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
            loss = component_loss(key, choices.get(key) or {"name": "default"}, head_family, class_counts,
                                  num_classes)
            built[component] = _adapt(head_family, key, loss)
    if "rpn_box_regression" in present:
        built["rpn_box_regression"] = rpn_smooth_l1
    return ComponentLosses(**{c: scaled(f, weights.get(c, 1.0)) for c, f in built.items()})


def loss_choices(loss: dict) -> tuple[dict[str, dict], dict[str, float]]:
    """A plain `loss` config section as ({config key: choice}, {component: weight})."""
    return {key: loss[key] for key in CONFIG_KEYS if key in loss}, loss["weights"]  # older runs: no centerness


def _adapt(family: str, key: str, loss: Callable) -> Callable:
    if key == "box":
        return RCNNBoxLoss(loss) if family == "rcnn" else AnchorBoxLoss(loss)
    if key == "mask":
        return MaskLoss(loss)
    return loss

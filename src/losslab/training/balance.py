"""loss.balance=initial: before training, each swapped component's weight is set so that its gradient norm at the
shared features on the probe batch (losslab.training.grad_shares) is the one loss=default gives it.

Why? Swapping a component's loss changes its shape and, with it, how hard it pulls on the network: GIoU on Faster
R-CNN needs a weight near 10 where smooth L1 had 1. Matching the gradient norm at the start makes a swap change the
shape, not the strength. A weight scales its component's loss, and so its gradient, exactly: the calibrated weight
is weight x (default's norm / chosen loss's norm), measured once on the initial weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from torch import nn

from losslab.modeling.heads import get_losses, set_losses
from losslab.training.grad_shares import ProbeBatch, component_grad_norms

log = logging.getLogger(__name__)


def balanced_weights(model: nn.Module, probe: ProbeBatch, build: Callable, choices: dict, weights: dict[str, float],
                     fixed: tuple[str, ...]) -> dict[str, float]:
    """`weights` with each component outside `fixed` (explicit loss.weights) re-weighted so that the losses
    `build(choices, weights)` give it, on `probe`, the gradient norm at the features that the default losses
    `build({}, weights)` give it. A component whose loss is the default one keeps its weight (its norm is the
    default's), and so does one whose chosen loss pushes the features not at all (no weight could match)."""
    chosen = probe_norms(model, build(choices, weights), probe)
    default = probe_norms(model, build({}, weights), probe)
    balanced = {name: weights[name] for name in chosen}  # the model's components only: what summary.json shows
    for name, norm in chosen.items():
        if name not in fixed and norm > 0 and norm != default[name]:
            balanced[name] = weights[name] * default[name] / norm
    return balanced


def probe_norms(model: nn.Module, losses, probe: ProbeBatch) -> dict[str, float]:
    """Each component's gradient norm at the features on `probe` with `losses` (the model's own are put back)."""
    kept = get_losses(model)
    set_losses(model, losses)
    try:
        return component_grad_norms(model, probe.images, probe.targets, probe.seed)
    finally:
        set_losses(model, kept)


def log_balanced(weights: dict[str, float], balanced: dict[str, float], phase: int | None = None) -> None:
    changed = {name: value for name, value in balanced.items() if value != weights[name]}
    where = "" if phase is None else f" (loss phase {phase})"
    if changed:
        log.info("loss.balance=initial%s: weights %s, matching loss=default's gradient norm at the features", where,
                 ", ".join(f"{name} {weights[name]:g} -> {value:.4g}" for name, value in changed.items()))
    else:
        log.info("loss.balance=initial%s: no swapped component to re-weight (default losses or explicit weights)",
                 where)


def balance_every_phase(model: nn.Module, probe: ProbeBatch, build: Callable, choices: dict,
                        weights: dict[str, float], schedule, explicit: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The calibrated weights of the run's losses ("0") and of each loss phase's (by its number, as a string: the
    keys summary.json and the checkpoint keep), logged. Every phase is calibrated here, on the initial weights, not
    when it starts: so every weight of the run is known, and logged, before it trains, and a resumed run has
    nothing to measure again."""
    every = {"0": choices} | {str(phase.number): phase.choices for phase in schedule.phases}
    balanced = {}
    for key, phase_choices in every.items():
        balanced[key] = balanced_weights(model, probe, build, phase_choices, weights, explicit)
        log_balanced(weights, balanced[key], None if key == "0" else int(key))
    return balanced

"""Each loss component's share of the gradient at the shared features: `train/grad_share/<component>` in
metrics.csv, measured on a fixed probe batch of the train split at the end of every epoch (trainer.grad_shares).

A component's gradient norm is the L2 norm of d(component's weighted loss)/d(features) over every feature map the
backbone outputs (a detector's FPN levels, a segmenter's last stages): what the heads read. Its share is that norm
over the sum of every component's norm, so the shares of an epoch sum to 1.

Why the features and not the backbone's parameters? Every head of both tasks reads the backbone's output, so the
gradient there is what each component asks of the shared representation, defined the same way for every
architecture. It is cheap: for the probe the features are detached into leaves, so the backward passes stop at the
heads and never run through the backbone (the bulk of a step). And it exists where a frozen backbone
(model.freeze, pretrained layers) gives its parameters no gradient at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from losslab.data.loaders import collate
from losslab.errors import LosslabError
from losslab.modeling.runtime import loss_mode, to_device
from losslab.reporting.curves import GRAD_SHARE
from losslab.training.loop import named_losses


@dataclass(frozen=True)
class ProbeBatch:
    """The batch every epoch's shares are measured on, on the run's device, and the seed its forward runs with."""

    images: list[Tensor]
    targets: list[dict]
    seed: int


def draw_probe(dataset, size: int, seed: int, device: torch.device) -> ProbeBatch:
    """`size` images of the train split chosen by `seed` and augmented once, on a forked RNG seeded with `seed`:
    the same batch every epoch and after a resume, and the run's own random stream is left where it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        chosen = torch.randperm(len(dataset))[:size].tolist()
        images, targets = collate([dataset[i] for i in chosen])
    images, targets = to_device(images, targets, device)
    return ProbeBatch(images, targets, seed)


def check_probed(model: nn.Module) -> None:
    """Refuse a model whose shared features the probe cannot find (it hooks `model.backbone`)."""
    if not isinstance(getattr(model, "backbone", None), nn.Module):
        raise LosslabError(f"trainer.grad_shares=true measures the gradient at the backbone's output, but this "
                           f"{type(model).__name__} has no `backbone` module; set trainer.grad_shares=false.")


def share_columns(model: nn.Module, probe: ProbeBatch | None) -> dict[str, float]:
    """The epoch's train/grad_share/<component> columns ({} without a probe: trainer.grad_shares=false)."""
    if probe is None:
        return {}
    norms = component_grad_norms(model, probe.images, probe.targets, probe.seed)
    return {GRAD_SHARE + name: share for name, share in shares(norms).items()}


def shares(norms: dict[str, float]) -> dict[str, float]:
    """Each norm as a fraction of their sum (NaN for all when every norm is 0: no component pushes the features)."""
    total = sum(norms.values())
    return {name: norm / total if total > 0 else math.nan for name, norm in norms.items()}


def component_grad_norms(model: nn.Module, images: list[Tensor], targets: list[dict], seed: int = 0
                         ) -> dict[str, float]:
    """The L2 norm of each loss component's gradient with respect to every feature map `model.backbone` outputs,
    on one batch, in loss mode (BatchNorm and dropout held in eval mode, as the validation loss runs) on an RNG
    seeded with `seed`. Weights, buffers, `.grad`s, modes and the caller's random stream are left as they were:
    torch.autograd.grad returns the gradients rather than accumulating them, and only into the features."""
    features: list[Tensor] = []

    def as_leaves(module: nn.Module, inputs, output):
        return _detached(output, features)

    handle = model.backbone.register_forward_hook(as_leaves)
    device = images[0].device
    try:
        with loss_mode(model), torch.enable_grad(), \
                torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            losses = named_losses(model(images, targets))
    finally:
        handle.remove()
    if not features:
        raise LosslabError(f"the backbone of this {type(model).__name__} returned no float feature maps; "
                           "trainer.grad_shares=true needs them (set it to false).")
    norms = {}
    for name, loss in losses.items():
        if name == "loss":
            continue
        grads = torch.autograd.grad(loss, features, retain_graph=True, allow_unused=True) if loss.requires_grad \
            else []
        norms[name] = math.sqrt(sum(float(g.double().square().sum()) for g in grads if g is not None))
    return norms


def _detached(output, leaves: list[Tensor]):
    """`output` (a tensor, or a dict, list or tuple of them) with every float tensor replaced by a detached copy
    that requires grad, each appended to `leaves`."""
    if isinstance(output, Tensor):
        if not output.is_floating_point():
            return output
        leaf = output.detach().requires_grad_()
        leaves.append(leaf)
        return leaf
    if isinstance(output, dict):
        return type(output)((key, _detached(value, leaves)) for key, value in output.items())
    if isinstance(output, list | tuple):
        return type(output)(_detached(value, leaves) for value in output)
    return output

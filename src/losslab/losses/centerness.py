"""FCOS's centre-ness losses: `fn(logits [P], targets [P] in [0, 1], **params)` summed over the P foreground
locations (the head divides by their number, as torchvision's FCOS does). The target is the location's centre-ness
sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)), a soft label: 1 at a box's centre, towards 0 at its sides."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from losslab.losses.functional import _sigmoid_focal_terms

__all__ = ["centerness_bce", "centerness_focal", "centerness_l1"]


def centerness_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Sum of BCE(sigmoid(x), t): torchvision's FCOS centre-ness loss."""
    if logits.numel() == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum")


def centerness_focal(logits: Tensor, targets: Tensor, *, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Sum of -a_t (1 - p_t)^gamma BCE(p, t), with p_t = p t + (1 - p)(1 - t) for a soft target t
    (`torchvision.ops.sigmoid_focal_loss`'s terms)."""
    if logits.numel() == 0:
        return logits.sum() * 0
    return _sigmoid_focal_terms(logits, targets.to(logits.dtype), alpha, gamma).sum()


def centerness_l1(logits: Tensor, targets: Tensor) -> Tensor:
    """Sum of |sigmoid(x) - t|: the predicted centre-ness against its target, in probability."""
    if logits.numel() == 0:
        return logits.sum() * 0
    return (torch.sigmoid(logits) - targets.to(logits.dtype)).abs().sum()

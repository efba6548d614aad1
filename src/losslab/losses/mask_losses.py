"""The mask head's losses (Mask R-CNN): `fn(mask_logits [P, M, M], targets [P, M, M] in [0, 1], **params)`, the
logits of each instance's class, each returning a scalar; the forms and rules of losslab.losses.functional apply
(an empty input gives `x.sum() * 0`; finite values and gradients at the edges). Checked against references and
hand-computed values in tests/losses/test_loss_functions.py and test_loss_edges.py.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from losslab.losses.functional import _sigmoid_focal_terms


def mask_bce(mask_logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over all pixels of BCE(sigmoid(x), t): torchvision's Mask R-CNN mask loss."""
    if mask_logits.numel() == 0:
        return mask_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(mask_logits, targets.to(mask_logits.dtype))


def check_smooth(smooth: float) -> None:
    """Raise ValueError unless smooth > 0, for the overlap losses (Dice, Jaccard and their mixes); the message says
    why."""
    if not smooth > 0:
        raise ValueError(f"smooth must be > 0, got {smooth}: with smooth = 0 an empty target mask gives 0/0 (NaN) "
                         "for an empty prediction and the largest loss, 1, for any other; a small value such as 1e-6 "
                         "keeps the loss close to exact Dice / IoU on the other instances")


def _soft_overlaps(mask_logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per instance (sum p t, sum p, sum t) with p = sigmoid(logits)."""
    probs = mask_logits.sigmoid().flatten(1)
    targets = targets.to(probs.dtype).flatten(1)
    return (probs * targets).sum(dim=1), probs.sum(dim=1), targets.sum(dim=1)


def dice(mask_logits: Tensor, targets: Tensor, *, smooth: float = 1.0) -> Tensor:
    """Mean over instances of 1 - (2 sum p t + smooth) / (sum p + sum t + smooth), p = sigmoid(logits);
    smooth > 0 (`check_smooth`), so an empty target with a confident empty prediction gives about 0."""
    check_smooth(smooth)
    if mask_logits.numel() == 0:
        return mask_logits.sum() * 0
    inter, sum_p, sum_t = _soft_overlaps(mask_logits, targets)
    return (1 - (2 * inter + smooth) / (sum_p + sum_t + smooth)).mean()


def jaccard(mask_logits: Tensor, targets: Tensor, *, smooth: float = 1.0) -> Tensor:
    """Soft IoU loss: mean over instances of 1 - (sum p t + smooth) / (sum p + sum t - sum p t + smooth)."""
    check_smooth(smooth)
    if mask_logits.numel() == 0:
        return mask_logits.sum() * 0
    inter, sum_p, sum_t = _soft_overlaps(mask_logits, targets)
    return (1 - (inter + smooth) / (sum_p + sum_t - inter + smooth)).mean()


def bce_dice(mask_logits: Tensor, targets: Tensor, *, bce_weight: float = 0.5, smooth: float = 1.0) -> Tensor:
    """bce_weight * mask_bce + (1 - bce_weight) * dice."""
    check_smooth(smooth)
    if mask_logits.numel() == 0:
        return mask_logits.sum() * 0
    return bce_weight * mask_bce(mask_logits, targets) + (1 - bce_weight) * dice(mask_logits, targets, smooth=smooth)


def ce_iou(mask_logits: Tensor, targets: Tensor, *, smooth: float = 1.0) -> Tensor:
    """CrossEntropyIoULoss2D: the average of the two, 0.5 * mask_bce + 0.5 * jaccard."""
    check_smooth(smooth)
    if mask_logits.numel() == 0:
        return mask_logits.sum() * 0
    return 0.5 * mask_bce(mask_logits, targets) + 0.5 * jaccard(mask_logits, targets, smooth=smooth)


def mask_focal(mask_logits: Tensor, targets: Tensor, *, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Mean over all pixels of -a_t (1 - p_t)^gamma log p_t (`torchvision.ops.sigmoid_focal_loss`)."""
    if mask_logits.numel() == 0:
        return mask_logits.sum() * 0
    return _sigmoid_focal_terms(mask_logits, targets.to(mask_logits.dtype), alpha, gamma).mean()

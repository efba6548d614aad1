"""Loss functions, each in the form its component calls it; every one is checked against a reference or a
hand-computed value in tests/losses/test_loss_functions.py.

A user's own loss (loss/<key>=custom) is called in the same forms, so any of these is a starting point; the
contract, with the shapes, units and normalisation the heads use, is docs/losses.md, "Your own loss".

Forms (all return a scalar tensor):

- classification: `fn(logits [N, C], labels [N] int64 with 0 = background, *, reduction="mean"|"sum", **params)`,
  reduced over the N rows;
- box regression: `fn(pred_deltas [P, 4], target_deltas [P, 4], anchors [P, 4] XYXY, box_coder, **params)`,
  summed over the P boxes; IoU losses compare the boxes that `box_coder` decodes from the deltas;
- mask (losslab.losses.mask_losses): `fn(mask_logits [P, M, M], targets [P, M, M] in [0, 1], **params)`, the
  logits of each instance's class;
- objectness: `fn(logits [S], labels [S] float 0/1, **params)`, mean over the S sampled anchors.

Empty inputs give `x.sum() * 0`: a zero that stays on the autograd graph, so `backward()` yields zero gradients
instead of the NaN a mean over nothing would. Every loss keeps a finite value and gradient at its edges too (saturated
logits, zero-size decoded boxes, empty masks): tests/losses/test_loss_edges.py checks each one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import distance_box_iou_loss, generalized_box_iou_loss

__all__ = [
    "binary_cross_entropy",
    "ciou",
    "cross_entropy",
    "diou",
    "giou",
    "huber",
    "iou",
    "l1",
    "mse",
    "multi_margin",
    "objectness_bce",
    "objectness_focal",
    "sigmoid_focal",
    "smooth_l1",
    "softmax_focal",
]


def _reduce(per_row: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_row.mean()
    if reduction == "sum":
        return per_row.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _check_reduction(reduction: str) -> None:
    # Checked before the empty-input shortcut so a typo fails on every batch, not only on non-empty ones.
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _focusing_factor(one_minus_p_t: Tensor, gamma: float) -> Tensor:
    """(1 - p_t)^gamma, with a finite gradient where p_t is 1.

    The derivative gamma (1 - p_t)^(gamma - 1) is infinite at p_t = 1 when gamma < 1, and autograd multiplies it by
    the zero derivative of a saturated sigmoid or softmax: NaN. There the factor is the constant 0^gamma (0, or 1 for
    gamma = 0: its value is unchanged), so no gradient flows through it; elsewhere the value and gradient are
    exactly those of `(1 - p_t) ** gamma`, so torchvision's RetinaNet loss stays bit-for-bit the same.
    """
    saturated = one_minus_p_t <= 0
    factor = torch.where(saturated, 1.0, one_minus_p_t) ** gamma
    return torch.where(saturated, float(gamma == 0), factor)


def _sigmoid_focal_terms(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """Elementwise -a_t (1 - p_t)^gamma log p_t: `torchvision.ops.sigmoid_focal_loss` with reduction "none", the
    same operations in the same order, but a finite gradient at p_t = 1 for gamma < 1 (`_focusing_factor`)."""
    if not (0 <= alpha <= 1 or alpha == -1):
        raise ValueError(f"alpha must be in [0, 1], or -1 to turn the weighting off; got {alpha}")
    p = torch.sigmoid(logits)
    ce_loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * _focusing_factor(1 - p_t, gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def _foreground_one_hot(logits: Tensor, labels: Tensor) -> Tensor:
    """One-hot targets [N, C] in the logits' dtype with column 0 zeroed: background is never a positive."""
    targets = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    targets[:, 0] = 0
    return targets


# --------------------------------------------------------------------------------------------- classification


def cross_entropy(
    logits: Tensor,
    labels: Tensor,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    weight: Tensor | None = None,
) -> Tensor:
    """Softmax cross-entropy -log p_y, exactly `F.cross_entropy` (a weighted "mean" is sum(w_y l) / sum(w_y))."""
    _check_reduction(reduction)
    if labels.numel() == 0:
        return logits.sum() * 0
    if weight is not None:  # built once on the CPU; follows the logits to their device
        weight = weight.to(logits.device, logits.dtype)
    return F.cross_entropy(logits, labels, weight=weight, label_smoothing=label_smoothing, reduction=reduction)


def binary_cross_entropy(logits: Tensor, labels: Tensor, *, reduction: str = "mean") -> Tensor:
    """Per row sum_c BCE(sigmoid(x_c), t_c) with t the one-hot label and t_0 = 0; mean or sum over rows."""
    _check_reduction(reduction)
    if labels.numel() == 0:
        return logits.sum() * 0
    targets = _foreground_one_hot(logits, labels)
    per_row = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)
    return _reduce(per_row, reduction)


def sigmoid_focal(
    logits: Tensor, labels: Tensor, *, reduction: str = "mean", alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Per row sum_c -a_t (1 - p_t)^gamma log p_t (torchvision's sigmoid focal loss) on the one-hot labels with
    t_0 = 0; mean or sum over rows. "sum" is torchvision's RetinaNet classification term."""
    _check_reduction(reduction)
    if labels.numel() == 0:
        return logits.sum() * 0
    targets = _foreground_one_hot(logits, labels)
    per_row = _sigmoid_focal_terms(logits, targets, alpha, gamma).sum(dim=1)
    return _reduce(per_row, reduction)


def softmax_focal(
    logits: Tensor, labels: Tensor, *, reduction: str = "mean", alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Per row -a_i (1 - p_i)^gamma log p_i, p_i the softmax probability of the true class.

    a_i = alpha for foreground rows (label > 0), 1 - alpha for background rows, and 1 when alpha < 0, mirroring
    the sigmoid form's weighting. gamma = 0 with alpha < 0 is cross-entropy exactly.
    """
    _check_reduction(reduction)
    if labels.numel() == 0:
        return logits.sum() * 0
    # log_softmax rather than log(softmax) keeps very confident rows finite.
    log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    per_row = -_focusing_factor(1 - log_p.exp(), gamma) * log_p
    if alpha >= 0:
        per_row = per_row * torch.where(labels > 0, alpha, 1 - alpha)
    return _reduce(per_row, reduction)


def multi_margin(logits: Tensor, labels: Tensor, *, reduction: str = "mean", margin: float = 1.0, p: int = 1) -> Tensor:
    """Multi-class hinge loss: per row sum_{c != y} max(0, margin - x_y + x_c)^p / C, as `F.multi_margin_loss`."""
    _check_reduction(reduction)
    if labels.numel() == 0:
        return logits.sum() * 0
    return F.multi_margin_loss(logits, labels, p=p, margin=margin, reduction=reduction)


# --------------------------------------------------------------------------------------------- box regression


def smooth_l1(
    pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder, *, beta: float = 1 / 9
) -> Tensor:
    """Sum of 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta, over the delta differences d."""
    if pred_deltas.numel() == 0:
        return pred_deltas.sum() * 0
    return F.smooth_l1_loss(pred_deltas, target_deltas, beta=beta, reduction="sum")


def l1(pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder) -> Tensor:
    """Sum of |d| over the delta differences d."""
    if pred_deltas.numel() == 0:
        return pred_deltas.sum() * 0
    return F.l1_loss(pred_deltas, target_deltas, reduction="sum")


def mse(pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder) -> Tensor:
    """Sum of d^2 over the delta differences d."""
    if pred_deltas.numel() == 0:
        return pred_deltas.sum() * 0
    return F.mse_loss(pred_deltas, target_deltas, reduction="sum")


def huber(
    pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder, *, delta: float = 1.0
) -> Tensor:
    """Sum of 0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), over the delta differences d."""
    if pred_deltas.numel() == 0:
        return pred_deltas.sum() * 0
    return F.huber_loss(pred_deltas, target_deltas, delta=delta, reduction="sum")


def _decode_pair(
    pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder
) -> tuple[Tensor, Tensor]:
    return box_coder.decode_single(pred_deltas, anchors), box_coder.decode_single(target_deltas, anchors)


def _pairwise_iou(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    """Per matched pair of XYXY boxes |A n B| / (|A u B| + eps); elementwise, as box_iou's diagonal would cost
    O(P^2)."""
    top_left = torch.maximum(pred[:, :2], target[:, :2])
    bottom_right = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area_pred = (pred[:, 2:] - pred[:, :2]).clamp(min=0).prod(dim=1)
    area_target = (target[:, 2:] - target[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_pred + area_target - inter + eps)


def iou(
    pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder, *, eps: float = 1e-7
) -> Tensor:
    """Sum over matched pairs of 1 - |A n B| / (|A u B| + eps), on the decoded XYXY boxes."""
    if pred_deltas.numel() == 0:
        return pred_deltas.sum() * 0
    pred, target = _decode_pair(pred_deltas, target_deltas, anchors, box_coder)
    return (1 - _pairwise_iou(pred, target, eps)).sum()


def giou(
    pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder, *, eps: float = 1e-7
) -> Tensor:
    """Sum of 1 - GIoU on the decoded boxes (`torchvision.ops.generalized_box_iou_loss`)."""
    return _decoded_boxes_loss(generalized_box_iou_loss, pred_deltas, target_deltas, anchors, box_coder, eps)


def diou(
    pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder, *, eps: float = 1e-7
) -> Tensor:
    """Sum of 1 - IoU + rho^2 / c^2 on the decoded boxes (`torchvision.ops.distance_box_iou_loss`)."""
    return _decoded_boxes_loss(distance_box_iou_loss, pred_deltas, target_deltas, anchors, box_coder, eps)


def ciou(
    pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder, *, eps: float = 1e-7
) -> Tensor:
    """Sum of 1 - IoU + rho^2 / c^2 + a v on the decoded boxes (`torchvision.ops.complete_box_iou_loss`), with
    v = 4 / pi^2 (atan(w_t / h_t) - atan(w / h))^2 and a = v / (1 - IoU + v + eps) held constant.

    eps enters every denominator (torchvision's uses it in a only) and every width and height of the aspect term, as
    MMDetection adds it to the heights: a box decoded with zero width or height (in float32, dh <= -16 on a 20 px
    anchor) keeps a finite value and gradient, where torchvision's atan(w / h) gives NaN.
    """
    if pred_deltas.numel() == 0:
        return pred_deltas.sum() * 0
    pred, target = _decode_pair(pred_deltas, target_deltas, anchors, box_coder)
    w_pred, h_pred = (pred[:, 2:] - pred[:, :2] + eps).unbind(dim=1)
    w_target, h_target = (target[:, 2:] - target[:, :2] + eps).unbind(dim=1)
    v = (4 / math.pi**2) * (torch.atan(w_target / h_target) - torch.atan(w_pred / h_pred)) ** 2
    with torch.no_grad():  # as in the paper and torchvision: a weighs v, no gradient flows through it
        alpha = v / (1 - _pairwise_iou(pred, target, eps) + v + eps)
    return (distance_box_iou_loss(pred, target, reduction="none", eps=eps) + alpha * v).sum()


def _decoded_boxes_loss(box_loss, pred_deltas: Tensor, target_deltas: Tensor, anchors: Tensor, box_coder: BoxCoder,
                        eps: float) -> Tensor:
    """`box_loss` (a torchvision.ops box loss) summed over the decoded predicted and target boxes."""
    if pred_deltas.numel() == 0:
        return pred_deltas.sum() * 0
    pred, target = _decode_pair(pred_deltas, target_deltas, anchors, box_coder)
    return box_loss(pred, target, reduction="sum", eps=eps)


# --------------------------------------------------------------------------------------------------- objectness


def objectness_bce(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean of BCE(sigmoid(x), y) over the sampled anchors: torchvision's RPN objectness loss."""
    if logits.numel() == 0:
        return logits.sum() * 0
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def objectness_focal(logits: Tensor, labels: Tensor, *, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Mean of -a_t (1 - p_t)^gamma log p_t over the sampled anchors (`torchvision.ops.sigmoid_focal_loss`)."""
    if logits.numel() == 0:
        return logits.sum() * 0
    return _sigmoid_focal_terms(logits, labels.to(logits.dtype), alpha, gamma).mean()

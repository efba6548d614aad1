"""PolyLoss in its Poly-1 form, as a losslab user loss (loss/cls=custom).

Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions", ICLR 2022: a
classification loss is a polynomial in (1 - p_t); Poly-1 adds epsilon times the first term to it. For
cross-entropy that gives CE + epsilon (1 - p_t), for the focal loss FL + epsilon (1 - p_t)^(gamma + 1). The two
functions below are the paper's Poly-1 code (its appendix) in PyTorch, written against losslab's classification
contract (docs/losses.md, "Your own loss"): `fn(logits [N, K+1], labels [N] int64 with 0 = background, *,
reduction, **params)` returning a scalar. epsilon = 0 gives losslab's `ce` and RetinaNet's `focal` exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def poly1_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, epsilon: float = 1.0,
                        reduction: str = "mean") -> torch.Tensor:
    """For the R-CNN classifier (softmax over background + K classes): per RoI CE + epsilon (1 - p_y),
    averaged over the sampled RoIs (reduction="mean", what losslab passes for R-CNN)."""
    cross_entropy = F.cross_entropy(logits, labels, reduction="none")
    p_true = torch.exp(-cross_entropy)  # the softmax probability of the true class, without a second softmax
    poly1 = cross_entropy + epsilon * (1 - p_true)
    return poly1.mean() if reduction == "mean" else poly1.sum()


def poly1_focal(logits: torch.Tensor, labels: torch.Tensor, *, epsilon: float = 1.0, alpha: float = 0.25,
                gamma: float = 2.0, reduction: str = "sum") -> torch.Tensor:
    """For RetinaNet (a sigmoid per class): per anchor the sum over classes of FL + epsilon (1 - p_t)^(gamma + 1),
    the targets one-hot with background (label 0) a negative for every class; summed over the anchors
    (reduction="sum", what losslab passes for RetinaNet: the head divides by the foreground anchors)."""
    targets = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    targets[:, 0] = 0  # column 0 is background: never a positive
    p = torch.sigmoid(logits)
    p_t = targets * p + (1 - targets) * (1 - p)
    focal = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * (1 - p_t) ** gamma
    if alpha >= 0:
        focal = (alpha * targets + (1 - alpha) * (1 - targets)) * focal
    poly1 = (focal + epsilon * (1 - p_t) ** (gamma + 1)).sum(dim=1)
    return poly1.mean() if reduction == "mean" else poly1.sum()

"""Classification losses in the two forms the heads call them.

R-CNN box classifier: `fn(logits [N, C], labels [N]) -> mean over the N sampled RoIs`, softmax
over C classes with 0 the background. RetinaNet: `fn(logits [M, C], targets [M, C]) -> sum` over
one-hot targets (all zeros for background anchors); the head divides by the foreground count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """torchvision's R-CNN classification loss."""
    return F.cross_entropy(logits, labels)


def softmax_focal_loss(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Focal loss on a softmax: mean of -a_i (1 - p_i)^gamma log p_i, p_i the true class's probability.

    a_i is `alpha` for foreground RoIs and 1 - alpha for background ones (alpha < 0: a_i = 1),
    mirroring the sigmoid form's weighting. gamma = 0 and alpha < 0 give plain cross-entropy.
    """
    if labels.numel() == 0:
        return logits.sum() * 0
    log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if alpha >= 0:
        loss = loss * torch.where(labels > 0, alpha, 1 - alpha)
    return loss.mean()


def sigmoid_focal_sum(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """torchvision's RetinaNet classification loss: sigmoid focal loss summed over anchors and classes."""
    return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="sum")

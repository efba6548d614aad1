"""RPN objectness losses: `fn(logits [S], labels [S]) -> mean over the S sampled anchors`."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def binary_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """torchvision's RPN objectness loss."""
    return F.binary_cross_entropy_with_logits(logits, labels)

"""Box regression losses in the forms the heads call them (torchvision's defaults)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder


def rcnn_smooth_l1(box_regression: Tensor, labels: Tensor, regression_targets: Tensor) -> Tensor:
    """torchvision's R-CNN box loss: smooth L1 (beta 1/9) on the true class's deltas of foreground
    RoIs, summed and divided by the number of sampled RoIs.

    box_regression is [N, C*4] (deltas for every class), labels [N], regression_targets [N, 4].
    """
    foreground = torch.where(labels > 0)[0]
    per_class = box_regression.reshape(box_regression.shape[0], -1, 4)
    loss = F.smooth_l1_loss(
        per_class[foreground, labels[foreground]], regression_targets[foreground], beta=1 / 9, reduction="sum"
    )
    return loss / labels.numel()


def rpn_smooth_l1(deltas: Tensor, targets: Tensor, num_sampled: int) -> Tensor:
    """torchvision's RPN box loss: smooth L1 (beta 1/9) over the foreground anchors' deltas [P, 4],
    divided by the number of sampled anchors (foreground and background)."""
    return F.smooth_l1_loss(deltas, targets, beta=1 / 9, reduction="sum") / num_sampled


def retina_l1(deltas: Tensor, anchors: Tensor, matched_boxes: Tensor, box_coder: BoxCoder) -> Tensor:
    """torchvision's RetinaNet box loss for one image: L1 between predicted and target deltas of the
    foreground anchors, summed (the head divides by the foreground count)."""
    return F.l1_loss(deltas, box_coder.encode_single(matched_boxes, anchors), reduction="sum")

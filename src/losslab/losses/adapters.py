"""Turn a pure loss from `functional` into the call each head makes.

The heads hand over what torchvision's own loss code sees; these adapters select the samples,
build the targets and normalise exactly as torchvision does, so that swapping the loss changes
nothing else and the default choices reproduce torchvision's losses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder, BoxLinearCoder
from torchvision.models.detection.roi_heads import project_masks_on_boxes


class RCNNBoxLoss:
    """R-CNN box head: `loss(pred, target, proposals, box_coder)` summed over foreground RoIs (the
    true class's deltas), divided by the number of sampled RoIs."""

    def __init__(self, loss: Callable[..., Tensor]):
        self.loss = loss

    def __call__(self, box_regression: Tensor, labels: Tensor, regression_targets: Tensor, proposals: Tensor,
                 box_coder: BoxCoder) -> Tensor:
        foreground = torch.where(labels > 0)[0]
        per_class = box_regression.reshape(box_regression.shape[0], -1, 4)
        pred = per_class[foreground, labels[foreground]]
        return self.loss(pred, regression_targets[foreground], proposals[foreground], box_coder) / labels.numel()


class AnchorBoxLoss:
    """A single-stage regression head (RetinaNet, FCOS, SSD): `loss(pred, target, anchors, box_coder)` summed over
    the foreground anchors of the call (the head divides by their number)."""

    def __init__(self, loss: Callable[..., Tensor]):
        self.loss = loss

    def __call__(self, deltas: Tensor, anchors: Tensor, matched_boxes: Tensor,
                 box_coder: BoxCoder | LinearBoxCoder) -> Tensor:
        return self.loss(deltas, box_coder.encode_single(matched_boxes, anchors), anchors, box_coder)


class LinearBoxCoder:
    """FCOS's box coder (torchvision's BoxLinearCoder: each side's distance from the location, divided by the anchor's
    size) with BoxCoder's `encode_single(boxes, anchors)` and `decode_single(deltas, anchors)`, so that every box loss
    (the IoU ones decode) takes it as it takes R-CNN's and RetinaNet's coders."""

    def __init__(self):
        self.coder = BoxLinearCoder(normalize_by_size=True)

    def encode_single(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        return self.coder.encode(anchors, boxes)

    def decode_single(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        return self.coder.decode(deltas, anchors)


class MaskLoss:
    """Mask R-CNN mask head: the ground-truth masks are cropped and resized to each positive
    proposal (torchvision's `project_masks_on_boxes`) and compared with the logit map of the
    instance's true class by `loss(logits [P, M, M], targets [P, M, M])`."""

    def __init__(self, loss: Callable[[Tensor, Tensor], Tensor]):
        self.loss = loss

    def __call__(self, mask_logits: Tensor, proposals: list[Tensor], gt_masks: list[Tensor],
                 gt_labels: list[Tensor], matched_idxs: list[Tensor]) -> Tensor:
        size = mask_logits.shape[-1]
        labels = torch.cat([image_labels[idxs] for image_labels, idxs in zip(gt_labels, matched_idxs, strict=True)])
        targets = torch.cat([project_masks_on_boxes(masks, boxes, idxs, size)
                             for masks, boxes, idxs in zip(gt_masks, proposals, matched_idxs, strict=True)])
        if targets.numel() == 0:
            return mask_logits.sum() * 0
        logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
        return self.loss(logits, targets)


def rpn_smooth_l1(deltas: Tensor, targets: Tensor, num_sampled: int) -> Tensor:
    """torchvision's RPN box loss: smooth L1 (beta 1/9) over the foreground anchors' deltas,
    divided by the number of sampled anchors (foreground and background)."""
    return torch.nn.functional.smooth_l1_loss(deltas, targets, beta=1 / 9, reduction="sum") / num_sampled

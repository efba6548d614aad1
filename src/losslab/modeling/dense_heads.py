"""The loss-configurable halves of torchvision's FCOS and SSD (SSD300-VGG16 and SSDlite320-MobileNetV3): the
matching, the encoding and inference stay torchvision's own (inherited), parameter names are unchanged (state dicts
load into stock models), and the training loss below follows torchvision's step for step, differing only in which
loss functions it calls. FCOS computes its loss in the head (subclassed), SSD in the model itself (subclassed)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.ssd import SSD

from losslab.losses.adapters import LinearBoxCoder
from losslab.losses.build import ComponentLosses


class LossFCOSHead(FCOSHead):
    """FCOS's head with configurable classification, box and centre-ness losses.

    Every location is classified (background: label 0, a row of zero targets for the sigmoid losses); boxes and
    centre-ness are learned at the foreground locations. Each term is summed and divided by the number of foreground
    locations of the whole batch, as torchvision does (RetinaNet divides per image).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, losses: ComponentLosses,
                 num_convs: int = 4):
        super().__init__(in_channels, num_anchors, num_classes, num_convs)
        self.losses = losses
        self.side_coder = LinearBoxCoder()  # the head's BoxLinearCoder, in the form the box losses take

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        labels, boxes = [], []
        for target, matched in zip(targets, matched_idxs, strict=True):
            foreground = matched >= 0
            image_labels = torch.zeros(len(matched), dtype=torch.int64, device=matched.device)  # 0: background
            image_boxes = torch.zeros(len(matched), 4, dtype=target["boxes"].dtype, device=matched.device)
            image_labels[foreground] = target["labels"][matched[foreground]]
            image_boxes[foreground] = target["boxes"][matched[foreground]]
            labels.append(image_labels)
            boxes.append(image_boxes)
        foreground = torch.stack(matched_idxs) >= 0
        labels, boxes, anchors = torch.stack(labels), torch.stack(boxes), torch.stack(anchors)
        num_foreground = max(1, int(foreground.sum()))
        logits = head_outputs["cls_logits"]
        classification = self.losses.classification(logits.reshape(-1, logits.shape[-1]), labels.flatten())
        matched_boxes, matched_anchors = boxes[foreground], anchors[foreground]
        box_regression = self.losses.box_regression(head_outputs["bbox_regression"][foreground], matched_anchors,
                                                    matched_boxes, self.side_coder)
        centerness = self.losses.centerness(head_outputs["bbox_ctrness"].squeeze(dim=2)[foreground],
                                            centerness_targets(self.side_coder.encode_single(matched_boxes,
                                                                                             matched_anchors)))
        return {
            "classification": classification / num_foreground,
            "bbox_regression": box_regression / num_foreground,
            "bbox_ctrness": centerness / num_foreground,
        }


def centerness_targets(sides: Tensor) -> Tensor:
    """FCOS's centre-ness of locations from their distances to the box sides (l, t, r, b):
    sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))."""
    left_right, top_bottom = sides[:, [0, 2]], sides[:, [1, 3]]
    return torch.sqrt((left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0])
                      * (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0]))


class LossSSD(SSD):
    """SSD (torchvision's SSD300-VGG16 and SSDlite320-MobileNetV3 alike) with configurable classification and box
    losses.

    Hard-negative mining stays torchvision's and comes first: every foreground default box, and the background
    boxes with the highest softmax cross-entropy (no gradient), `neg_to_pos_ratio` (3) times as many as the image's
    foreground ones, are mined. The classification loss, built-in or the user's, receives those mined boxes only
    (foreground first, then the hard negatives), whatever it is; each term is summed and divided by the number of
    foreground boxes of the batch.
    """

    def __init__(self, *args, losses: ComponentLosses, **kwargs):
        super().__init__(*args, **kwargs)
        self.losses = losses

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        labels, box_regression = [], []
        for target, deltas, image_anchors, matched in zip(targets, head_outputs["bbox_regression"], anchors,
                                                          matched_idxs, strict=True):
            foreground = torch.where(matched >= 0)[0]
            box_regression.append(self.losses.box_regression(
                deltas[foreground], image_anchors[foreground], target["boxes"][matched[foreground]], self.box_coder))
            image_labels = torch.zeros(len(matched), dtype=torch.int64, device=matched.device)  # 0: background
            image_labels[foreground] = target["labels"][matched[foreground]]
            labels.append(image_labels)
        labels = torch.stack(labels)
        logits = head_outputs["cls_logits"]
        positive, negative = mined_boxes(logits, labels, self.neg_to_pos_ratio)
        rows = torch.cat([torch.where(positive.flatten())[0], torch.where(negative.flatten())[0]])
        flat_logits = logits.reshape(-1, logits.shape[-1])
        num_foreground = max(1, int(positive.sum()))
        return {
            "bbox_regression": torch.stack(box_regression).sum() / num_foreground,
            "classification": self.losses.classification(flat_logits[rows], labels.flatten()[rows]) / num_foreground,
        }


def mined_boxes(logits: Tensor, labels: Tensor, neg_to_pos_ratio: float) -> tuple[Tensor, Tensor]:
    """(foreground, hard negatives) masks [N, A] of SSD's hard-negative mining, torchvision's: per image the
    `neg_to_pos_ratio` x foreground background boxes with the highest softmax cross-entropy."""
    with torch.no_grad():
        per_box = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.flatten(),
                                                    reduction="none").view(labels.shape)
        positive = labels > 0
        num_negative = neg_to_pos_ratio * positive.sum(1, keepdim=True)
        per_box[positive] = -float("inf")  # a foreground box is never a negative
        _, order = per_box.sort(1, descending=True)
        negative = (order.sort(1)[1] < num_negative) & ~positive
    return positive, negative


def ssd_arguments(model: SSD) -> dict:
    """The constructor arguments that rebuild the SSD `model` (sharing its modules; its transform is set after)."""
    transform = model.transform
    return dict(backbone=model.backbone, anchor_generator=model.anchor_generator, size=transform.fixed_size,
                num_classes=None, image_mean=transform.image_mean, image_std=transform.image_std, head=model.head,
                score_thresh=model.score_thresh, nms_thresh=model.nms_thresh,
                detections_per_img=model.detections_per_img, iou_thresh=model.proposal_matcher.high_threshold,
                topk_candidates=model.topk_candidates, positive_fraction=1 / (1 + model.neg_to_pos_ratio))


def stock_ssd(model: LossSSD) -> SSD:
    """torchvision's own SSD sharing `model`'s modules, transform and inference settings (TorchScript cannot
    compile the Python loss objects LossSSD holds)."""
    stock = SSD(**ssd_arguments(model))
    stock.transform = model.transform
    return stock.train(model.training)

"""torchvision's loss-computing heads, subclassed to call a `ComponentLosses` instead of their
hard-coded losses. Sampling, matching, encoding and inference stay torchvision's own (inherited),
parameter names are unchanged (state dicts load into stock models), and nothing in torchvision
is patched: each subclass is built from the stock head it replaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork

from losslab.losses.build import ComponentLosses
from losslab.losses.segmentation_build import SegmentationLosses
from losslab.modeling.dense_heads import LossFCOSHead, LossSSD, stock_ssd
from losslab.modeling.segmenters import Segmenter


class LossRPN(RegionProposalNetwork):
    """The RPN with configurable objectness and box losses."""

    def __init__(self, stock: RegionProposalNetwork, losses: ComponentLosses):
        super().__init__(**rpn_arguments(stock))
        self.losses = losses

    def compute_loss(
        self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        positive = torch.where(torch.cat(sampled_pos))[0]
        sampled = torch.cat([positive, torch.where(torch.cat(sampled_neg))[0]])
        labels = torch.cat(labels)
        regression_targets = torch.cat(regression_targets)
        objectness_loss = self.losses.objectness(objectness.flatten()[sampled], labels[sampled])
        box_loss = self.losses.rpn_box_regression(
            pred_bbox_deltas[positive], regression_targets[positive], sampled.numel()
        )
        return objectness_loss, box_loss


class LossRoIHeads(RoIHeads):
    """The R-CNN box (and mask) heads with configurable classification, box and mask losses.

    Inference is torchvision's; the training forward below follows torchvision's step for step
    and differs only in which loss functions it calls.
    """

    def __init__(self, stock: RoIHeads, losses: ComponentLosses):
        super().__init__(**roi_heads_arguments(stock))
        self.losses = losses

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are needed in training mode")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        all_labels = torch.cat(labels)
        losses = {
            "loss_classifier": self.losses.classification(class_logits, all_labels),
            "loss_box_reg": self.losses.box_regression(box_regression, all_labels, torch.cat(regression_targets),
                                                       torch.cat(proposals), self.box_coder),
        }
        if self.has_mask():
            # Masks are learned on positive proposals only, as in torchvision.
            positive = [torch.where(image_labels > 0)[0] for image_labels in labels]
            mask_proposals = [p[keep] for p, keep in zip(proposals, positive, strict=True)]
            mask_matched_idxs = [m[keep] for m, keep in zip(matched_idxs, positive, strict=True)]
            mask_features = self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes))
            mask_logits = self.mask_predictor(mask_features)
            losses["loss_mask"] = self.losses.mask(
                mask_logits,
                mask_proposals,
                [t["masks"] for t in targets],
                [t["labels"] for t in targets],
                mask_matched_idxs,
            )
        return [], losses


class LossRetinaNetHead(RetinaNetHead):
    """RetinaNet's head with configurable classification and box losses.

    The per-image normalisation (divide by the number of foreground anchors, then average over
    images) is torchvision's and is kept for every loss.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, losses: ComponentLosses,
                 norm_layer: Callable[[int], nn.Module] | None = None):
        super().__init__(in_channels, num_anchors, num_classes, norm_layer=norm_layer)
        self.losses = losses

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        ignored = self.classification_head.BETWEEN_THRESHOLDS
        box_coder = self.regression_head.box_coder
        classification, box_regression = [], []
        for target, logits, deltas, image_anchors, matched in zip(
            targets, head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors, matched_idxs, strict=True
        ):
            foreground = torch.where(matched >= 0)[0]
            num_foreground = max(1, foreground.numel())
            labels = torch.zeros(len(matched), dtype=torch.int64, device=matched.device)  # 0: background
            labels[foreground] = target["labels"][matched[foreground]]
            valid = matched != ignored
            classification.append(self.losses.classification(logits[valid], labels[valid]) / num_foreground)
            matched_boxes = target["boxes"][matched[foreground]]
            box_regression.append(
                self.losses.box_regression(deltas[foreground], image_anchors[foreground], matched_boxes, box_coder)
                / num_foreground
            )
        return {
            "classification": torch.stack(classification).sum() / len(targets),
            "bbox_regression": torch.stack(box_regression).sum() / max(1, len(targets)),
        }


def set_losses(model: nn.Module, losses: ComponentLosses | SegmentationLosses) -> None:
    """Make every loss-computing head of a model built by losslab use `losses` (a segmenter: itself)."""
    for head in loss_heads(model):
        head.losses = losses


def get_losses(model: nn.Module) -> ComponentLosses | SegmentationLosses:
    return loss_heads(model)[0].losses


def loss_heads(model: nn.Module) -> list[nn.Module]:
    heads = [m for m in model.modules()
             if isinstance(m, LossRPN | LossRoIHeads | LossRetinaNetHead | LossFCOSHead | LossSSD | Segmenter)]
    if not heads:
        raise TypeError("the model was not built by losslab: it has no loss-configurable heads")
    return heads


def with_stock_heads(model: nn.Module) -> nn.Module:
    """`model` with torchvision's own RPN, RoI heads, RetinaNet or FCOS head (SSD: the SSD itself) in place of
    losslab's loss-configurable subclasses, sharing their weights and inference settings.

    The subclasses hold Python loss objects that TorchScript cannot compile; inference never uses them.
    """
    if isinstance(model, LossSSD):
        return stock_ssd(model)
    for detector, stock_head in ((FCOS, FCOSHead), (RetinaNet, RetinaNetHead)):
        if isinstance(model, detector):
            head = stock_head(model.backbone.out_channels, model.anchor_generator.num_anchors_per_location()[0],
                              model.head.classification_head.num_classes)
            # Its two halves are the loss head's own, whatever their layers (v1 or v2's GroupNorm).
            head.classification_head = model.head.classification_head
            head.regression_head = model.head.regression_head
            model.head = head.train(model.training)
            return model
    model.rpn = RegionProposalNetwork(**rpn_arguments(model.rpn))
    model.roi_heads = RoIHeads(**roi_heads_arguments(model.roi_heads))
    model.rpn.train(model.training)  # a new module starts in train mode
    model.roi_heads.train(model.training)
    return model


def rpn_arguments(rpn: RegionProposalNetwork) -> dict:
    """The constructor arguments that rebuild `rpn` (sharing its modules): from a stock RPN to losslab's, and back."""
    return dict(anchor_generator=rpn.anchor_generator, head=rpn.head,
                fg_iou_thresh=rpn.proposal_matcher.high_threshold, bg_iou_thresh=rpn.proposal_matcher.low_threshold,
                batch_size_per_image=rpn.fg_bg_sampler.batch_size_per_image,
                positive_fraction=rpn.fg_bg_sampler.positive_fraction,
                pre_nms_top_n=rpn._pre_nms_top_n, post_nms_top_n=rpn._post_nms_top_n,
                nms_thresh=rpn.nms_thresh, score_thresh=rpn.score_thresh)


def roi_heads_arguments(roi: RoIHeads) -> dict:
    """The constructor arguments that rebuild `roi` (sharing its modules), as rpn_arguments does for the RPN."""
    return dict(box_roi_pool=roi.box_roi_pool, box_head=roi.box_head, box_predictor=roi.box_predictor,
                fg_iou_thresh=roi.proposal_matcher.high_threshold, bg_iou_thresh=roi.proposal_matcher.low_threshold,
                batch_size_per_image=roi.fg_bg_sampler.batch_size_per_image,
                positive_fraction=roi.fg_bg_sampler.positive_fraction,
                bbox_reg_weights=roi.box_coder.weights, score_thresh=roi.score_thresh, nms_thresh=roi.nms_thresh,
                detections_per_img=roi.detections_per_img,
                mask_roi_pool=roi.mask_roi_pool, mask_head=roi.mask_head, mask_predictor=roi.mask_predictor)


def set_score_threshold(model: nn.Module, value: float) -> None:
    """Set the score at or below which the model drops detections."""
    if hasattr(model, "roi_heads"):
        model.roi_heads.score_thresh = value
    else:
        model.score_thresh = value


@contextlib.contextmanager
def scores_at_least(model: nn.Module, value: float) -> Iterator[None]:
    """Detections scoring below `value` dropped inside the model, before NMS and the mask head, then the model's
    own threshold back. The detections at or above `value` are exactly those of the model's own threshold: NMS
    only suppresses a box for a higher-scoring one, and the top detections above `value` stay the top ones."""
    previous = model.roi_heads.score_thresh if hasattr(model, "roi_heads") else model.score_thresh
    # The model keeps float32 scores strictly above its threshold; `value` itself must stay.
    set_score_threshold(model, max(previous, float(np.nextafter(np.float32(value), np.float32(-np.inf)))))
    try:
        yield
    finally:
        set_score_threshold(model, previous)

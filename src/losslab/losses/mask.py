"""Mask R-CNN mask losses: `fn(mask_logits, proposals, gt_masks, gt_labels, matched_idxs) -> scalar`."""

from __future__ import annotations

from torchvision.models.detection.roi_heads import maskrcnn_loss

# torchvision's own: per-pixel BCE on the true class's 28x28 mask, against the ground truth
# cropped and resized to each positive proposal.
binary_cross_entropy = maskrcnn_loss

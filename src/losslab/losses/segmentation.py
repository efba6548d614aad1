"""Per-pixel losses of task=segmentation, in the form the segmenter calls them (the user-loss contract too):

    fn(logits [B, C, H, W] float, target [B, H, W] int64, **params) -> a scalar tensor

C classes with background 0; pixels whose target is `ignore_index` (255: the data's void label) count nowhere.
Dice, Jaccard, Tversky and Lovasz are segmentation_models_pytorch's multi-class losses, used as they are (the field's
reference); focal follows smp's FocalLoss formula with losslab's saturation-safe focusing factor. A batch without
one counted pixel gives `logits.sum() * 0`: zero, with zero gradients, where a mean over no pixel would be NaN.
tests/losses/test_segmentation_losses.py checks each against an independent or hand-computed value and at its edges.
"""

from __future__ import annotations

import segmentation_models_pytorch.losses as smp
import torch.nn.functional as F
from torch import Tensor

# One-vs-rest sigmoid focal terms with a finite gradient at saturation (losslab.losses.functional, issue 19).
from losslab.losses.catalogue import IGNORE_INDEX
from losslab.losses.functional import _sigmoid_focal_terms

__all__ = ["ce_iou", "cross_entropy", "dice", "focal", "jaccard", "lovasz", "tversky"]

MULTICLASS = smp.MULTICLASS_MODE


def _nothing_counted(target: Tensor, ignore_index: int) -> bool:
    return not bool((target != ignore_index).any())


def cross_entropy(logits: Tensor, target: Tensor, *, label_smoothing: float = 0.0, ignore_index: int = IGNORE_INDEX,
                  weight: Tensor | None = None) -> Tensor:
    """-log p_y averaged over the counted pixels, exactly `F.cross_entropy` (weighted: sum(w_y l) / sum(w_y))."""
    if _nothing_counted(target, ignore_index):
        return logits.sum() * 0
    if weight is not None:  # built once on the CPU; follows the logits to their device
        weight = weight.to(logits.device, logits.dtype)
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing)


def focal(logits: Tensor, target: Tensor, *, alpha: float | None = None, gamma: float = 2.0,
          ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean over classes c of the mean over counted pixels of -a_t (1 - p_t)^gamma log p_t, p = sigmoid(logit_c)
    against (target == c): smp's FocalLoss(mode="multiclass"), with a finite gradient at p_t = 1 for gamma < 1."""
    if _nothing_counted(target, ignore_index):
        return logits.sum() * 0
    counted = target != ignore_index
    pixel_logits = logits.movedim(1, -1)[counted]  # [P, C]
    one_hot = F.one_hot(target[counted], logits.shape[1]).to(logits.dtype)
    # Every class has the same P pixels, so the mean over classes of per-class means is the overall mean.
    return _sigmoid_focal_terms(pixel_logits, one_hot, -1 if alpha is None else alpha, gamma).mean()


def dice(logits: Tensor, target: Tensor, *, smooth: float = 0.0, classes: list[int] | None = None,
         log_loss: bool = False, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """1 - soft Dice 2|P n T| / (|P| + |T|) per class over the batch's counted pixels, averaged over `classes`
    (smp's DiceLoss); a class without a target pixel in the batch adds 0."""
    if _nothing_counted(target, ignore_index):
        return logits.sum() * 0
    return smp.DiceLoss(MULTICLASS, classes=classes, log_loss=log_loss, smooth=smooth,
                        ignore_index=ignore_index)(logits, target)


def jaccard(logits: Tensor, target: Tensor, *, smooth: float = 0.0, classes: list[int] | None = None,
            log_loss: bool = False, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """1 - soft IoU |P n T| / |P u T| per class over the batch's counted pixels, averaged over `classes`
    (smp's JaccardLoss); a class without a target pixel in the batch adds 0."""
    if _nothing_counted(target, ignore_index):
        return logits.sum() * 0
    return smp.JaccardLoss(MULTICLASS, classes=classes, log_loss=log_loss, smooth=smooth,
                           ignore_index=ignore_index)(logits, target)


def ce_iou(logits: Tensor, target: Tensor, *, smooth: float = 0.0, classes: list[int] | None = None,
           ignore_index: int = IGNORE_INDEX) -> Tensor:
    """CrossEntropyIoULoss2D: 0.5 cross-entropy + 0.5 Jaccard loss."""
    return 0.5 * cross_entropy(logits, target, ignore_index=ignore_index) + 0.5 * jaccard(
        logits, target, smooth=smooth, classes=classes, ignore_index=ignore_index)


def tversky(logits: Tensor, target: Tensor, *, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0,
            smooth: float = 0.0, classes: list[int] | None = None, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """(mean over classes of 1 - |P n T| / (|P n T| + alpha FP + beta FN))^gamma (smp's TverskyLoss); alpha = beta
    = 0.5 is Dice, 1 and 1 Jaccard."""
    if _nothing_counted(target, ignore_index):
        return logits.sum() * 0
    return smp.TverskyLoss(MULTICLASS, classes=classes, smooth=smooth, ignore_index=ignore_index, alpha=alpha,
                           beta=beta, gamma=gamma)(logits, target)


def lovasz(logits: Tensor, target: Tensor, *, per_image: bool = False, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Lovasz-softmax (Berman et al. 2018): the Lovasz extension of each present class's Jaccard loss on the
    softmax probabilities, averaged (smp's LovaszLoss)."""
    if _nothing_counted(target, ignore_index):
        return logits.sum() * 0
    return smp.LovaszLoss(MULTICLASS, per_image=per_image, ignore_index=ignore_index)(logits, target)


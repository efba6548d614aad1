"""losslab.losses.functional against torch / torchvision references and hand-computed values (tiny tensors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import (
    box_iou,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

from losslab.losses import functional as L
from losslab.losses import mask_losses as M
from losslab.losses.components import balanced_class_weights

CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))


def _close(actual, expected, atol=1e-6, rtol=1e-5):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=rtol)


def _classification(n=7, c=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=gen) * 2
    labels = torch.randint(0, c, (n,), generator=gen)
    labels[0], labels[1] = 0, c - 1  # at least one background and one foreground row
    return logits, labels


def _onehot_col0_zero(labels, c):
    targets = F.one_hot(labels, c).float()
    targets[:, 0] = 0
    return targets


def _random_boxes(p, gen, scale=50.0):
    xy = torch.rand(p, 2, generator=gen) * scale
    wh = 5 + torch.rand(p, 2, generator=gen) * 20
    return torch.cat([xy, xy + wh], dim=1)


def _box_regression(p=6, seed=0):
    """Deltas of random target boxes w.r.t. random anchors, and noisy predicted deltas."""
    gen = torch.Generator().manual_seed(seed)
    anchors = _random_boxes(p, gen)
    targets = anchors + torch.randn(p, 4, generator=gen) * 2
    targets[:, 2:] = torch.maximum(targets[:, 2:], targets[:, :2] + 1)  # keep them valid boxes
    target_deltas = CODER.encode_single(targets, anchors)
    pred_deltas = target_deltas + torch.randn(p, 4, generator=gen) * 0.5
    return pred_deltas, target_deltas, anchors


# ------------------------------------------------------------------------------------------- classification


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch_with_weights_and_label_smoothing(reduction):
    logits, labels = _classification()
    weight = torch.tensor([0.5, 1.0, 2.0, 3.0])
    for kwargs in ({}, {"weight": weight}, {"label_smoothing": 0.1}, {"weight": weight, "label_smoothing": 0.2}):
        expected = F.cross_entropy(logits, labels, reduction=reduction, **kwargs)
        _close(L.cross_entropy(logits, labels, reduction=reduction, **kwargs), expected)


def test_weighted_cross_entropy_mean_is_the_weighted_mean():
    logits, labels = _classification()
    weight = torch.tensor([0.5, 1.0, 2.0, 3.0])
    nll = -F.log_softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    w = weight[labels]
    _close(L.cross_entropy(logits, labels, weight=weight), (w * nll).sum() / w.sum())


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_binary_cross_entropy_is_bce_on_one_hot_without_background(reduction):
    logits, labels = _classification()
    total = F.binary_cross_entropy_with_logits(logits, _onehot_col0_zero(labels, 4), reduction="sum")
    expected = total / len(labels) if reduction == "mean" else total
    _close(L.binary_cross_entropy(logits, labels, reduction=reduction), expected)


def test_sigmoid_focal_sum_is_retinanet_classification_loss():
    logits, labels = _classification()
    for alpha, gamma in ((0.25, 2.0), (0.5, 1.0)):
        expected = sigmoid_focal_loss(logits, _onehot_col0_zero(labels, 4), alpha=alpha, gamma=gamma, reduction="sum")
        _close(L.sigmoid_focal(logits, labels, reduction="sum", alpha=alpha, gamma=gamma), expected)
        _close(L.sigmoid_focal(logits, labels, alpha=alpha, gamma=gamma), expected / len(labels))


def test_sigmoid_focal_without_focusing_or_alpha_is_binary_cross_entropy():
    logits, labels = _classification()
    for reduction in ("mean", "sum"):
        _close(L.sigmoid_focal(logits, labels, reduction=reduction, alpha=-1, gamma=0.0),
               L.binary_cross_entropy(logits, labels, reduction=reduction))


def test_softmax_focal_without_focusing_or_alpha_is_cross_entropy():
    logits, labels = _classification()
    for reduction in ("mean", "sum"):
        _close(L.softmax_focal(logits, labels, reduction=reduction, alpha=-1, gamma=0.0),
               F.cross_entropy(logits, labels, reduction=reduction))


def test_softmax_focal_hand_computed():
    # Row 0: logits [0, 0], label 1 (foreground): p = 1/2, a = 0.25 -> 0.25 * (1/2)^2 * ln 2.
    # Row 1: logits [ln 3, 0], label 0 (background): p = 3/4, a = 0.75 -> 0.75 * (1/4)^2 * ln(4/3).
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([1, 0])
    row0 = 0.25 * 0.25 * math.log(2.0)
    row1 = 0.75 * 0.0625 * math.log(4 / 3)
    _close(L.softmax_focal(logits, labels, alpha=0.25, gamma=2.0), (row0 + row1) / 2)
    _close(L.softmax_focal(logits, labels, reduction="sum", alpha=0.25, gamma=2.0), row0 + row1)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_multi_margin_matches_torch(reduction):
    logits, labels = _classification()
    for margin, p in ((1.0, 1), (0.5, 2)):
        expected = F.multi_margin_loss(logits, labels, p=p, margin=margin, reduction=reduction)
        _close(L.multi_margin(logits, labels, reduction=reduction, margin=margin, p=p), expected)


@pytest.mark.parametrize("fn", [L.cross_entropy, L.binary_cross_entropy, L.sigmoid_focal, L.softmax_focal,
                                L.multi_margin])
def test_classification_rejects_unknown_reduction(fn):
    logits, labels = _classification()
    with pytest.raises(ValueError):
        fn(logits, labels, reduction="none")
    with pytest.raises(ValueError):
        fn(logits[:0], labels[:0], reduction="avg")


# ------------------------------------------------------------------------------------------- box regression


@pytest.mark.parametrize(("fn", "reference", "kwargs"), [
    (L.smooth_l1, F.smooth_l1_loss, {"beta": 1 / 9}),
    (L.smooth_l1, F.smooth_l1_loss, {"beta": 0.5}),
    (L.l1, F.l1_loss, {}),
    (L.mse, F.mse_loss, {}),
    (L.huber, F.huber_loss, {"delta": 1.0}),
    (L.huber, F.huber_loss, {"delta": 0.3}),
])
def test_delta_losses_match_torch_sums(fn, reference, kwargs):
    pred, target, anchors = _box_regression()
    _close(fn(pred, target, anchors, CODER, **kwargs), reference(pred, target, reduction="sum", **kwargs))


def test_smooth_l1_default_beta_is_one_ninth():
    pred, target, anchors = _box_regression()
    _close(L.smooth_l1(pred, target, anchors, CODER), F.smooth_l1_loss(pred, target, beta=1 / 9, reduction="sum"))


@pytest.mark.parametrize(("fn", "op"), [
    (L.giou, generalized_box_iou_loss),
    (L.diou, distance_box_iou_loss),
    (L.ciou, complete_box_iou_loss),
])
def test_iou_family_matches_torchvision_on_decoded_boxes(fn, op):
    pred, target, anchors = _box_regression()
    expected = op(CODER.decode_single(pred, anchors), CODER.decode_single(target, anchors), reduction="sum")
    _close(fn(pred, target, anchors, CODER), expected)


def test_iou_is_the_diagonal_of_box_iou():
    pred, target, anchors = _box_regression(p=5, seed=3)
    pred_boxes, target_boxes = CODER.decode_single(pred, anchors), CODER.decode_single(target, anchors)
    expected = (1 - box_iou(pred_boxes, target_boxes).diagonal()).sum()
    _close(L.iou(pred, target, anchors, CODER), expected)


def test_iou_hand_computed():
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 4 + 4 - 1 = 7 -> IoU 1/7.
    # [0,0,4,2] vs [0,0,2,2]: intersection 4, union 8 + 4 - 4 = 8 -> IoU 1/2.
    # [0,0,1,1] vs [2,2,3,3]: disjoint -> IoU 0.
    pred_boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    target_boxes = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0]])
    anchors = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.5, 0.5, 3.0, 3.0], [0.0, 0.0, 3.0, 3.0]])
    pred = CODER.encode_single(pred_boxes, anchors)
    target = CODER.encode_single(target_boxes, anchors)
    _close(CODER.decode_single(pred, anchors), pred_boxes, atol=1e-5, rtol=0)  # the deltas do stand for the boxes
    _close(L.iou(pred[:1], target[:1], anchors[:1], CODER), 1 - 1 / 7)
    _close(L.iou(pred, target, anchors, CODER), (1 - 1 / 7) + (1 - 1 / 2) + 1)


@pytest.mark.parametrize("fn", [L.iou, L.giou, L.diou, L.ciou])
def test_iou_losses_of_identical_boxes_are_zero(fn):
    _, target, anchors = _box_regression()
    assert abs(fn(target.clone(), target, anchors, CODER).item()) < 1e-5


@pytest.mark.parametrize("fn", [L.iou, L.giou, L.diou, L.ciou])
def test_iou_losses_grow_with_the_error(fn):
    _, target, anchors = _box_regression()
    small, large = (fn(target + s, target, anchors, CODER).item() for s in (0.1, 1.0))
    assert 0 < small < large


# ---------------------------------------------------------------------------------------------------- mask

# Instance 0: logits 0 everywhere (p = 1/2), target [[1, 1], [0, 0]]: sum pt = 1, sum p = 2, sum t = 2,
#   BCE per pixel ln 2.
# Instance 1: logits [[ln 3, ln 3], [-ln 3, -ln 3]] (p = 3/4, 3/4, 1/4, 1/4), same target: sum pt = 3/2,
#   sum p = 2, sum t = 2, BCE per pixel -ln(3/4) = ln(4/3).
LN3 = math.log(3.0)
MASK_LOGITS = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[LN3, LN3], [-LN3, -LN3]]])
MASK_TARGETS = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])
DICE = ((1 - (2 * 1 + 1) / (2 + 2 + 1)) + (1 - (2 * 1.5 + 1) / (2 + 2 + 1))) / 2  # (2/5 + 1/5) / 2 = 0.3
JACCARD = ((1 - (1 + 1) / (2 + 2 - 1 + 1)) + (1 - (1.5 + 1) / (2 + 2 - 1.5 + 1))) / 2  # (1/2 + 2/7) / 2
BCE = (math.log(2.0) + math.log(4 / 3)) / 2  # mean over 8 pixels, 4 of each kind


def test_mask_bce_matches_torch_and_hand_value():
    _close(M.mask_bce(MASK_LOGITS, MASK_TARGETS), BCE)
    gen = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(3, 5, 5, generator=gen), torch.rand(3, 5, 5, generator=gen)
    _close(M.mask_bce(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))


def test_dice_hand_computed():
    assert math.isclose(DICE, 0.3)
    _close(M.dice(MASK_LOGITS[:1], MASK_TARGETS[:1]), 0.4)
    _close(M.dice(MASK_LOGITS, MASK_TARGETS), DICE)
    # smooth = 0.5: instance 0 is 1 - (2 + 0.5) / (4 + 0.5) = 4/9.
    _close(M.dice(MASK_LOGITS[:1], MASK_TARGETS[:1], smooth=0.5), 4 / 9)


def test_jaccard_hand_computed():
    assert math.isclose(JACCARD, (1 / 2 + 2 / 7) / 2)
    _close(M.jaccard(MASK_LOGITS[1:], MASK_TARGETS[1:]), 2 / 7)
    _close(M.jaccard(MASK_LOGITS, MASK_TARGETS), JACCARD)


def test_ce_iou_hand_computed():
    _close(M.ce_iou(MASK_LOGITS, MASK_TARGETS), 0.5 * BCE + 0.5 * JACCARD)


def test_bce_dice_hand_computed():
    _close(M.bce_dice(MASK_LOGITS, MASK_TARGETS), 0.5 * BCE + 0.5 * DICE)
    _close(M.bce_dice(MASK_LOGITS, MASK_TARGETS, bce_weight=0.25), 0.25 * BCE + 0.75 * DICE)


@pytest.mark.parametrize("fn", [M.dice, M.jaccard])
def test_overlap_losses_of_confident_correct_logits_are_zero(fn):
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]])
    logits = torch.where(targets > 0, 20.0, -20.0)
    assert fn(logits, targets).item() < 1e-6
    assert fn(-logits, targets).item() > 0.5  # and confidently wrong ones are not


def test_mask_focal_matches_torchvision():
    gen = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(2, 4, 4, generator=gen), (torch.rand(2, 4, 4, generator=gen) > 0.5).float()
    for alpha, gamma in ((0.25, 2.0), (-1, 0.0)):
        expected = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="mean")
        _close(M.mask_focal(logits, targets, alpha=alpha, gamma=gamma), expected)
    _close(M.mask_focal(logits, targets, alpha=-1, gamma=0.0), F.binary_cross_entropy_with_logits(logits, targets))


# ---------------------------------------------------------------------------------------------- objectness


def test_objectness_losses_match_references():
    gen = torch.Generator().manual_seed(2)
    logits, labels = torch.randn(9, generator=gen), (torch.rand(9, generator=gen) > 0.5).float()
    _close(L.objectness_bce(logits, labels), F.binary_cross_entropy_with_logits(logits, labels))
    _close(L.objectness_focal(logits, labels), sigmoid_focal_loss(logits, labels, 0.25, 2.0, reduction="mean"))
    _close(L.objectness_focal(logits, labels, alpha=0.5, gamma=1.0),
           sigmoid_focal_loss(logits, labels, 0.5, 1.0, reduction="mean"))


# ------------------------------------------------------------------------------------------------ empty input


def _empty_classification(fn):
    logits = torch.zeros(0, 4, requires_grad=True)
    return logits, lambda: fn(logits, torch.zeros(0, dtype=torch.long))


def _empty_box(fn):
    pred = torch.zeros(0, 4, requires_grad=True)
    return pred, lambda: fn(pred, torch.zeros(0, 4), torch.zeros(0, 4), CODER)


def _empty_mask(fn):
    logits = torch.zeros(0, 2, 2, requires_grad=True)
    return logits, lambda: fn(logits, torch.zeros(0, 2, 2))


def _empty_objectness(fn):
    logits = torch.zeros(0, requires_grad=True)
    return logits, lambda: fn(logits, torch.zeros(0))


EMPTY_CASES = [
    *((fn, _empty_classification) for fn in (L.cross_entropy, L.binary_cross_entropy, L.sigmoid_focal,
                                             L.softmax_focal, L.multi_margin)),
    *((fn, _empty_box) for fn in (L.smooth_l1, L.l1, L.mse, L.huber, L.iou, L.giou, L.diou, L.ciou)),
    *((fn, _empty_mask) for fn in (M.mask_bce, M.dice, M.jaccard, M.bce_dice, M.ce_iou, M.mask_focal)),
    *((fn, _empty_objectness) for fn in (L.objectness_bce, L.objectness_focal)),
]


@pytest.mark.parametrize(("fn", "make"), EMPTY_CASES, ids=[fn.__name__ for fn, _ in EMPTY_CASES])
def test_empty_input_gives_zero_and_finite_gradients(fn, make):
    leaf, call = make(fn)
    loss = call()
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() == 0
    loss.backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and (leaf.grad == 0).all()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_empty_classification_with_weight_or_smoothing(reduction):
    logits = torch.zeros(0, 3, requires_grad=True)
    loss = L.cross_entropy(logits, torch.zeros(0, dtype=torch.long), reduction=reduction,
                           weight=torch.ones(3), label_smoothing=0.1)
    assert loss.item() == 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------------------------- class weights


def test_balanced_class_weights_hand_computed():
    # n = 100 objects in K = 3 classes: w_k = 100 / (3 n_k) -> 10/3, 10/9, 5/9; they average 1 per object.
    counts = [10, 30, 60]
    weights = balanced_class_weights(counts)
    assert weights.dtype == torch.float32
    _close(weights, [10 / 3, 10 / 9, 5 / 9])
    _close(balanced_class_weights(torch.tensor(counts)), [10 / 3, 10 / 9, 5 / 9])
    _close((weights * torch.tensor(counts)).sum() / sum(counts), 1.0)


def test_balanced_class_weights_are_scikit_learns_balanced_weights():
    class_weight = pytest.importorskip("sklearn.utils.class_weight")
    counts = [10, 30, 60, 1, 7]
    labels = np.repeat(np.arange(len(counts)), counts)
    expected = class_weight.compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels)
    _close(balanced_class_weights(counts), expected, rtol=1e-6)


def test_balanced_class_weights_give_a_class_without_objects_weight_one():
    # Present: 10 and 30 objects, n = 40, K = 2 -> 40/20 = 2 and 40/60 = 2/3; the class without objects gets 1
    # (issue 19: it used to get the largest weight).
    _close(balanced_class_weights([10, 0, 30]), [2.0, 1.0, 2 / 3])
    _close(balanced_class_weights([0, 0]), [1.0, 1.0])
    with pytest.raises(ValueError):
        balanced_class_weights([3, -1])

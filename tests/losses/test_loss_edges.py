"""Every built-in loss keeps a finite value and a finite gradient at the edges of its inputs (issue 19): the issue's
reproductions, hand-computed values where losslab differs from torchvision, and a property test over the catalogue."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import complete_box_iou_loss, sigmoid_focal_loss

from losslab.errors import LosslabError
from losslab.losses import centerness as C
from losslab.losses import functional as L
from losslab.losses import mask_losses as M
from losslab.losses.adapters import rpn_smooth_l1
from losslab.losses.build import build_losses
from losslab.losses.catalogue import CATALOGUE
from losslab.losses.components import checked_parameters, class_weights

UNIT_CODER = BoxCoder((1.0, 1.0, 1.0, 1.0))  # RetinaNet's weights
RCNN_CODER = BoxCoder((10.0, 10.0, 5.0, 5.0))


def _value_and_gradient(fn, leaf: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = leaf.clone().requires_grad_(True)
    value = fn(leaf, *args, **kwargs)
    value.backward()
    return value.detach(), leaf.grad


def _assert_finite(value: torch.Tensor, gradient: torch.Tensor | None, case: str) -> None:
    assert value.dim() == 0 and torch.isfinite(value), (case, value)
    assert gradient is not None and torch.isfinite(gradient).all(), (case, gradient)


# ------------------------------------------------------------------------------------------ the reproductions


def test_ciou_of_a_box_decoded_with_zero_height_is_finite():
    anchors, target = torch.tensor([[40.0, 40.0, 60.0, 60.0]]), torch.zeros(1, 4)
    pred = torch.tensor([[0.0, 0.0, 0.0, -16.0]])  # decodes to [40, 50, 60, 50] in float32: height 0
    assert UNIT_CODER.decode_single(pred, anchors)[0, 3] == UNIT_CODER.decode_single(pred, anchors)[0, 1]
    value, gradient = _value_and_gradient(L.ciou, pred, target, anchors, UNIT_CODER)
    # Same centre, IoU 0: 1 + a v, v = 4/pi^2 (atan(1) - atan(inf))^2 = 1/4, a = v / (1 + v) -> 1.05.
    torch.testing.assert_close(value, torch.tensor(1.05))
    assert torch.isfinite(gradient).all() and gradient[0, 3] <= 0  # a taller box would lower the loss
    decoded = UNIT_CODER.decode_single(pred, anchors), UNIT_CODER.decode_single(target, anchors)
    torch.testing.assert_close(value, complete_box_iou_loss(*decoded, reduction="sum"))  # torchvision's value


def test_ciou_of_a_box_decoded_with_zero_size_is_finite():
    anchors = torch.tensor([[40.0, 40.0, 60.0, 60.0]])
    value, gradient = _value_and_gradient(L.ciou, torch.tensor([[0.0, 0.0, -30.0, -30.0]]), torch.zeros(1, 4),
                                          anchors, UNIT_CODER)
    # A point at the target's centre: IoU 0, no centre distance, and eps / eps is the target's square aspect: 1.
    torch.testing.assert_close(value, torch.tensor(1.0))
    assert torch.isfinite(gradient).all()


def _deltas(pred_boxes: list[float], target_boxes: list[float], anchors: list[float]):
    anchors = torch.tensor([anchors])
    return (UNIT_CODER.encode_single(torch.tensor([pred_boxes]), anchors),
            UNIT_CODER.encode_single(torch.tensor([target_boxes]), anchors), anchors)


def test_ciou_eps_enters_every_denominator_and_every_width_and_height():
    eps = 1.0
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 7, centre distance^2 2, enclosing diagonal^2 18, same aspect.
    pred, target, anchors = _deltas([0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 3, 3])
    expected = 1 - 1 / (7 + eps) + 2 / (18 + eps)
    torch.testing.assert_close(L.ciou(pred, target, anchors, UNIT_CODER, eps=eps), torch.tensor(expected))
    # [0,0,4,2] vs [0,0,2,2]: intersection 4, union 8, centre distance^2 1, diagonal^2 20; aspects (4+1)/(2+1)
    # and (2+1)/(2+1).
    pred, target, anchors = _deltas([0, 0, 4, 2], [0, 0, 2, 2], [0, 0, 3, 3])
    iou = 4 / (8 + eps)
    v = 4 / math.pi**2 * (math.atan(3 / 3) - math.atan(5 / 3)) ** 2
    expected = 1 - iou + 1 / (20 + eps) + v / (1 - iou + v + eps) * v
    torch.testing.assert_close(L.ciou(pred, target, anchors, UNIT_CODER, eps=eps), torch.tensor(expected))


@pytest.mark.parametrize(("fn", "logits", "labels"), [
    (L.softmax_focal, [[30.0, -30.0, -30.0]], [0]),
    (L.sigmoid_focal, [[-30.0, 30.0]], [1]),
    (L.objectness_focal, [30.0, -30.0], [1.0, 0.0]),
    (M.mask_focal, [[[30.0, -30.0], [-30.0, 30.0]]], [[[1.0, 0.0], [0.0, 1.0]]]),
], ids=["softmax_focal", "sigmoid_focal", "objectness_focal", "mask_focal"])
@pytest.mark.parametrize("alpha", [-1, 0.25])
def test_focal_losses_with_gamma_below_one_have_finite_gradients_at_certainty(fn, logits, labels, alpha):
    value, gradient = _value_and_gradient(fn, torch.tensor(logits), torch.tensor(labels), alpha=alpha, gamma=0.5)
    assert value.item() == 0 and torch.isfinite(gradient).all()


@pytest.mark.parametrize("gamma", [2.0, 0.5, 0.0])
def test_sigmoid_focal_is_torchvisions_bit_for_bit_wherever_torchvision_is_finite(gamma):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=gen) * 8
    logits[:4] = 30.0 * logits[:4].sign()  # saturated: p_t is exactly 0 or 1 in float32
    targets = (torch.rand(64, 5, generator=gen) > 0.7).float()
    ours, our_gradient = _value_and_gradient(lambda x: M.mask_focal(x, targets, alpha=0.25, gamma=gamma), logits)
    theirs, their_gradient = _value_and_gradient(
        lambda x: sigmoid_focal_loss(x, targets, alpha=0.25, gamma=gamma, reduction="mean"), logits)
    assert torch.equal(ours, theirs)
    finite = torch.isfinite(their_gradient)
    assert finite.any() and torch.equal(our_gradient[finite], their_gradient[finite])
    assert torch.isfinite(our_gradient).all()


@pytest.mark.parametrize("fn", [M.dice, M.jaccard, M.bce_dice, M.ce_iou])
def test_overlap_losses_refuse_smooth_zero(fn):
    with pytest.raises(ValueError, match="smooth must be > 0"):
        fn(torch.full((1, 4, 4), -200.0), torch.zeros(1, 4, 4), smooth=0.0)


@pytest.mark.parametrize("name", ["dice", "jaccard", "bce_dice", "ce_iou"])
def test_building_an_overlap_loss_with_smooth_zero_names_the_key(name):
    with pytest.raises(LosslabError, match=rf"loss\.mask\.smooth=0\.0 \({name}\): smooth must be > 0"):
        build_losses("mask_rcnn", {"mask": {"name": name, "smooth": 0.0}}, {})


@pytest.mark.parametrize(
    ("key", "name", "spec", "message"),
    [
        ("cls", "focal", {"gamma": -1.0}, "loss.cls.gamma=-1.0 (focal): gamma must be >= 0."),
        ("cls", "focal", {"alpha": 1.5}, "loss.cls.alpha=1.5 (focal): alpha must be in [0, 1] or -1."),
        ("cls", "ce", {"label_smoothing": 1.2},
         "loss.cls.label_smoothing=1.2 (ce): label_smoothing must be in [0, 1]."),
        ("box", "huber", {"delta": 0.0}, "loss.box.delta=0.0 (huber): delta must be > 0."),
        ("pixel", "tversky", {"beta": "high"}, "loss.pixel.beta=high (tversky): beta must be a number >= 0."),
    ],
)
def test_a_parameter_outside_its_catalogue_range_is_refused(key, name, spec, message):
    with pytest.raises(LosslabError, match=re.escape(message)):
        checked_parameters(key, name, spec)


def test_the_ends_of_a_range_and_its_extra_values_are_accepted():
    assert checked_parameters("cls", "focal", {"alpha": -1, "gamma": 0})[1] == {"alpha": -1, "gamma": 0}
    assert checked_parameters("pixel", "focal", {"alpha": None})[1]["alpha"] is None
    assert checked_parameters("mask", "bce_dice", {"bce_weight": 1.0})[1]["bce_weight"] == 1.0


@pytest.mark.parametrize("fn", [M.dice, M.jaccard])
@pytest.mark.parametrize("logit", [-200.0, -30.0])
def test_overlap_losses_of_a_confident_empty_prediction_of_an_empty_mask_are_zero(fn, logit):
    value, gradient = _value_and_gradient(fn, torch.full((1, 4, 4), logit), torch.zeros(1, 4, 4))
    assert value.item() < 1e-9 and torch.isfinite(gradient).all()


def test_auto_class_weights_of_a_class_without_train_objects_are_neutral():
    weights = class_weights("cls", "auto", [10, 0, 30])
    assert weights.tolist() == pytest.approx([1.0, 2.0, 1.0, 2 / 3])  # not the largest weight, as before


# --------------------------------------------------------------------------- the property test, every loss


def _classification_cases():
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 2, 3, 0, 3])
    rows = torch.arange(len(labels))
    softmax_perfect = torch.full((6, 4), -30.0)
    softmax_perfect[rows, labels] = 30.0
    sigmoid_perfect = torch.full((6, 4), -30.0)  # RetinaNet's targets: background has no positive column
    sigmoid_perfect[rows[labels > 0], labels[labels > 0]] = 30.0
    background = torch.zeros(5, dtype=torch.long)
    yield "random", torch.randn(6, 4, generator=gen) * 3, labels
    yield "perfect (softmax)", softmax_perfect, labels
    yield "perfect (sigmoid)", sigmoid_perfect, labels
    yield "confidently wrong", -softmax_perfect, labels
    yield "logits +-30", 30 * torch.randn(6, 4, generator=gen).sign(), labels
    yield "all background, perfect", torch.tensor([[30.0, -30.0, -30.0, -30.0]]).repeat(5, 1), background
    yield "all background, random", torch.randn(5, 4, generator=gen) * 3, background
    yield "single row", torch.tensor([[-30.0, 30.0, -30.0, -30.0]]), torch.tensor([1])
    yield "empty", torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)


def _box_cases():
    """(pred, target) deltas in units of the coder's weights, and anchors."""
    gen = torch.Generator().manual_seed(1)
    anchors = torch.tensor([[40.0, 40.0, 60.0, 60.0], [0.0, 0.0, 16.0, 32.0], [10.0, 20.0, 74.0, 36.0]])
    random, other = torch.randn(3, 4, generator=gen) * 0.5, torch.randn(3, 4, generator=gen) * 0.5
    zero_height, zero_size = random.clone(), random.clone()
    zero_height[:, 3] = -16.0
    zero_size[:, 2:] = -30.0
    yield "random", random, other, anchors
    yield "perfect", random, random.clone(), anchors
    yield "zero-height predictions", zero_height, other, anchors
    yield "zero-size predictions", zero_size, other, anchors
    yield "zero-area targets", random, zero_size, anchors
    yield "zero-size, identical", zero_size, zero_size.clone(), anchors
    yield "deltas +-30", 30 * torch.randn(3, 4, generator=gen).sign(), other, anchors
    yield "empty", torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 4)


def _mask_cases():
    gen = torch.Generator().manual_seed(2)
    binary = (torch.rand(3, 6, 6, generator=gen) > 0.5).float()
    empty, single = torch.zeros(2, 6, 6), torch.zeros(2, 6, 6)
    single[:, 2, 3] = 1.0
    yield "random", torch.randn(3, 6, 6, generator=gen) * 3, binary
    yield "soft targets", torch.randn(3, 6, 6, generator=gen) * 3, torch.rand(3, 6, 6, generator=gen)
    yield "perfect", torch.where(binary > 0, 30.0, -30.0), binary
    yield "confidently wrong", torch.where(binary > 0, -30.0, 30.0), binary
    yield "empty masks, confident empty prediction", torch.full((2, 6, 6), -30.0), empty
    yield "empty masks, probabilities exactly 0", torch.full((2, 6, 6), -200.0), empty
    yield "empty masks, confident full prediction", torch.full((2, 6, 6), 30.0), empty
    yield "single-pixel masks, perfect", torch.where(single > 0, 30.0, -30.0), single
    yield "single-pixel masks, missed", torch.full((2, 6, 6), -30.0), single
    yield "full masks, perfect", torch.full((2, 6, 6), 30.0), torch.ones(2, 6, 6)
    yield "empty set", torch.zeros(0, 6, 6), torch.zeros(0, 6, 6)


def _objectness_cases():
    gen = torch.Generator().manual_seed(3)
    labels = (torch.rand(8, generator=gen) > 0.5).float()
    yield "random", torch.randn(8, generator=gen) * 3, labels
    yield "perfect", torch.where(labels > 0, 30.0, -30.0), labels
    yield "confidently wrong", torch.where(labels > 0, -30.0, 30.0), labels
    yield "all background, perfect", torch.full((8,), -30.0), torch.zeros(8)
    yield "all background, random", torch.randn(8, generator=gen) * 3, torch.zeros(8)
    yield "all foreground, perfect", torch.full((8,), 30.0), torch.ones(8)
    yield "empty", torch.zeros(0), torch.zeros(0)


def _centerness_cases():
    """FCOS's centre-ness: one logit per foreground location against a soft target in [0, 1]."""
    gen = torch.Generator().manual_seed(4)
    targets = torch.rand(8, generator=gen)
    yield "random", torch.randn(8, generator=gen) * 3, targets
    yield "saturated", torch.tensor([-40.0, 40.0] * 4), targets
    yield "targets at 0 and 1", torch.randn(8, generator=gen) * 3, torch.tensor([0.0, 1.0] * 4)
    yield "empty", torch.zeros(0), torch.zeros(0)


def _parameter_sets(key: str, name: str, function_name: str):
    """The catalogue's defaults, bound as `build_losses` binds them, and gamma 0.5 and 2 for the focal losses."""
    params = dict(CATALOGUE[key][name].defaults)
    if "weights" in params:  # weighted_ce: auto weights of a skewed train split
        params["weight"] = class_weights("cls", params.pop("weights"), [30, 1, 4])
    if key == "cls":
        params["reduction"] = "sum" if function_name == "sigmoid_focal" else "mean"
    if "gamma" not in params:
        return [params]
    return [{**params, "gamma": 0.5}, {**params, "gamma": 2.0}, {**params, "gamma": 0.5, "alpha": -1}]


def _built_in_losses():
    for key, losses in CATALOGUE.items():
        if key == "pixel":  # task=segmentation's: tests/losses/test_segmentation_losses.py
            continue
        for name, loss in losses.items():
            for function_name in filter(None, (loss.function, loss.retinanet_function)):
                for params in _parameter_sets(key, name, function_name):
                    shown = ",".join(f"{k}={v}" for k, v in params.items() if k not in ("weight", "reduction"))
                    yield pytest.param(key, function_name, params, id=f"{key}-{name}-{function_name}-{shown}")


@pytest.mark.parametrize(("key", "function_name", "params"), list(_built_in_losses()))
def test_every_built_in_loss_is_finite_with_finite_gradients_at_its_edges(key, function_name, params):
    fn = getattr(L, function_name, None) or getattr(M, function_name, None) or getattr(C, function_name)
    if key == "box":
        for coder in (UNIT_CODER, RCNN_CODER):
            scale = torch.tensor(coder.weights)
            for case, pred, target, anchors in _box_cases():
                value, gradient = _value_and_gradient(fn, pred * scale, target * scale, anchors, coder, **params)
                _assert_finite(value, gradient, f"{case}, coder weights {coder.weights}")
        return
    cases = {"cls": _classification_cases, "mask": _mask_cases, "objectness": _objectness_cases,
             "centerness": _centerness_cases}[key]
    for case, inputs, targets in cases():
        _assert_finite(*_value_and_gradient(fn, inputs, targets, **params), case)


def test_rpn_box_loss_is_finite_with_finite_gradients_at_its_edges():
    for case, pred, target, _ in _box_cases():
        value, gradient = _value_and_gradient(rpn_smooth_l1, pred, target, 256)
        _assert_finite(value, gradient, case)

"""The per-pixel losses of task=segmentation: each against hand-computed values or an independent implementation,
finite with finite gradients at their edges, and wired with their weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import segmentation_models_pytorch.losses as smp
import torch
import torch.nn.functional as F

from losslab.losses import segmentation as S
from losslab.losses.catalogue import CATALOGUE
from losslab.losses.components import class_weights
from losslab.losses.segmentation_build import build_segmentation_losses, reference_losses

# One image of 2 x 2 pixels, two classes; logits log(p) so that the softmax gives exactly p (class 1's probability).
P1 = torch.tensor([0.9, 0.2, 0.6, 0.1], dtype=torch.float64)
TARGET = torch.tensor([1, 0, 1, 0]).reshape(1, 2, 2)


def logits_of(p1: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.log(1 - p1), torch.log(p1)]).reshape(1, 2, 2, 2)


def test_dice_is_the_mean_over_classes_of_one_minus_twice_the_overlap_over_the_sizes():
    dice1 = 2 * (0.9 + 0.6) / (1.8 + 2)  # class 1: sum p t, sum p, sum t
    dice0 = 2 * (0.8 + 0.9) / (2.2 + 2)
    assert S.dice(logits_of(P1), TARGET).item() == pytest.approx(1 - (dice1 + dice0) / 2)
    assert S.dice(logits_of(P1), TARGET, classes=[1]).item() == pytest.approx(1 - dice1)
    assert S.dice(logits_of(P1), TARGET, log_loss=True).item() == pytest.approx(-(math.log(dice1) + math.log(dice0))
                                                                                / 2)


def test_jaccard_tversky_and_ce_iou_by_hand():
    iou1, iou0 = 1.5 / (1.8 + 2 - 1.5), 1.7 / (2.2 + 2 - 1.7)
    jaccard = 1 - (iou1 + iou0) / 2
    assert S.jaccard(logits_of(P1), TARGET).item() == pytest.approx(jaccard)
    # Tversky: TP / (TP + alpha FP + beta FN) per class; FP1 = 0.3, FN1 = 0.5, FP0 = 0.5, FN0 = 0.3
    tversky1, tversky0 = 1.5 / (1.5 + 0.3 * 0.3 + 0.7 * 0.5), 1.7 / (1.7 + 0.3 * 0.5 + 0.7 * 0.3)
    assert S.tversky(logits_of(P1), TARGET, alpha=0.3, beta=0.7).item() == pytest.approx(
        1 - (tversky1 + tversky0) / 2)
    cross_entropy = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.9)) / 4
    assert S.ce_iou(logits_of(P1), TARGET).item() == pytest.approx(0.5 * cross_entropy + 0.5 * jaccard)


def test_cross_entropy_and_its_weights_by_hand_and_ignored_pixels_count_nowhere():
    terms = -np.log([0.9, 0.8, 0.6, 0.9])
    assert S.cross_entropy(logits_of(P1), TARGET).item() == pytest.approx(terms.mean())
    weight = torch.tensor([1.0, 3.0], dtype=torch.float64)
    weighted = (3 * terms[0] + terms[1] + 3 * terms[2] + terms[3]) / (3 + 1 + 3 + 1)
    assert S.cross_entropy(logits_of(P1), TARGET, weight=weight).item() == pytest.approx(weighted)
    ignored = TARGET.clone()
    ignored[0, 0, 0] = 255  # the pixel with p = 0.9 counts nowhere
    expected = {"cross_entropy": terms[1:].mean(), "dice": None}
    assert S.cross_entropy(logits_of(P1), ignored).item() == pytest.approx(expected["cross_entropy"])
    dice1, dice0 = 2 * 0.6 / (0.9 + 1), 2 * (0.8 + 0.9) / (2.1 + 2)  # the ignored pixel leaves p and t alike
    assert S.dice(logits_of(P1), ignored).item() == pytest.approx(1 - (dice1 + dice0) / 2)


def test_focal_matches_segmentation_models_pytorch():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 5, 6), generator=generator)
    target[0, :2] = 255
    for alpha, gamma in ((None, 2.0), (0.25, 2.0), (0.5, 0.0), (None, 1.5)):
        reference = smp.FocalLoss("multiclass", alpha=alpha, gamma=gamma, ignore_index=255)(logits, target)
        assert S.focal(logits, target, alpha=alpha, gamma=gamma).item() == pytest.approx(reference.item(), rel=1e-9)


def lovasz_softmax_by_definition(probabilities: np.ndarray, target: np.ndarray) -> float:
    """Berman et al. 2018, Algorithm 1: for each class present, the errors |[y = c] - p_c| sorted decreasingly,
    dotted with the increments of the Jaccard loss of the sorted prefix; averaged over the present classes."""
    losses = []
    for c in range(probabilities.shape[0]):
        truth = (target == c).astype(float).ravel()
        if truth.sum() == 0:
            continue
        errors = np.abs(truth - probabilities[c].ravel())
        order = np.argsort(-errors, kind="stable")
        sorted_truth = truth[order]
        intersection = truth.sum() - np.cumsum(sorted_truth)
        union = truth.sum() + np.cumsum(1 - sorted_truth)
        jaccard = 1 - intersection / union
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
        losses.append(float(errors[order] @ jaccard))
    return float(np.mean(losses))


def test_lovasz_softmax_matches_its_definition():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 5, generator=generator)  # float32: smp's Lovasz computes in it
    target = torch.randint(0, 2, (1, 4, 5), generator=generator)  # class 2 absent: left out of the mean
    expected = lovasz_softmax_by_definition(logits.softmax(1)[0].double().numpy(), target[0].numpy())
    assert S.lovasz(logits, target).item() == pytest.approx(expected, rel=1e-5)


EDGE_CASES = {
    "all ignored": (torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 255)),
    "one class only, absent classes": (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.int64)),
    "saturated and right": (torch.tensor([-30.0, 30.0, -30.0])[None, :, None, None].expand(1, 3, 2, 2).clone(),
                            torch.ones(1, 2, 2, dtype=torch.int64)),
    "saturated and wrong": (torch.tensor([30.0, -30.0, -30.0])[None, :, None, None].expand(1, 3, 2, 2).clone(),
                            torch.ones(1, 2, 2, dtype=torch.int64)),
}


def _losses():
    for name, loss in CATALOGUE["pixel"].items():
        params = dict(loss.defaults)
        if "weights" in params:
            params["weight"] = class_weights("pixel", params.pop("weights"), [100, 3, 0])
        variants = [params] + ([{**params, "gamma": 0.5}] if name == "focal" else [])
        for variant in variants:
            yield pytest.param(loss.function, variant, id=f"{name}-{variant.get('gamma', '')}")


@pytest.mark.parametrize(("function", "params"), list(_losses()))
def test_every_pixel_loss_is_finite_with_finite_gradients_at_its_edges(function, params):
    for case, (logits, target) in EDGE_CASES.items():
        logits = logits.clone().requires_grad_(True)
        value = getattr(S, function)(logits, target, **params)
        value.backward()
        assert value.ndim == 0 and torch.isfinite(value), (case, value)
        assert torch.isfinite(logits.grad).all(), case
        if case == "all ignored":
            assert value.item() == 0 and not logits.grad.any(), case


def test_automatic_weights_are_balanced_over_the_pixels_of_every_class():
    # scikit-learn's balanced n / (K n_k): 1000 pixels of 3 classes (900, 90, 10)
    assert class_weights("pixel", "auto", [900, 90, 10]).tolist() == pytest.approx([1000 / 2700, 1000 / 270, 1000 / 30])
    assert class_weights("pixel", [1, 2, 3], [5, 5, 5]).tolist() == [1, 2, 3]


def test_component_weights_scale_each_term_and_the_reference_is_plain_cross_entropy_of_the_main_output():
    logits, target = logits_of(P1), TARGET
    losses = build_segmentation_losses({"pixel": {"name": "dice", "smooth": 0.0, "classes": None, "log_loss": False,
                                                  "ignore_index": 255}}, {"pixel": 2.0, "aux": 0.5}, aux=True)
    assert losses.pixel(logits, target).item() == pytest.approx(2 * S.dice(logits, target).item())
    assert losses.aux(logits, target).item() == pytest.approx(0.5 * S.dice(logits, target).item())
    assert build_segmentation_losses({"pixel": {"name": "default"}}, {"pixel": 1.0, "aux": 0.5}, aux=False).aux is None
    reference = reference_losses()
    assert reference.aux is None
    assert reference.pixel(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item())


def test_a_user_pixel_loss_is_called_like_the_built_in_one_and_checked_before_training(user_folder):
    from losslab.errors import LosslabError
    from losslab.losses.components import check_user_losses

    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    target[0, 0] = 255
    custom = {"pixel": {"name": "custom", "_target_": "userloss.pixel_ce", "label_smoothing": 0.1}}
    losses = build_segmentation_losses(custom, {"pixel": 1.0, "aux": 0.5}, aux=True)
    expected = F.cross_entropy(logits, target, ignore_index=255, label_smoothing=0.1)
    assert torch.allclose(losses.pixel(logits, target), expected)
    assert torch.allclose(losses.aux(logits, target), 0.5 * expected)
    # once, however many phases name it
    checked = check_user_losses(("pixel",), "segmenter", [custom, custom], 3, torch.device("cpu"))
    assert [loss.target for loss in checked] == ["userloss.pixel_ce"]
    wrong = {"pixel": {"name": "custom", "_target_": "userloss.pixel_sum"}}
    with pytest.raises(LosslabError, match=r"loss.pixel._target_=userloss.pixel_sum \(per-pixel loss\): returned "
                                           r"shape \[8, 8\] instead of a scalar"):
        check_user_losses(("pixel",), "segmenter", [wrong], 3, torch.device("cpu"))

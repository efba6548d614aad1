"""Users' own losses (loss/<key>=custom): the contract each head calls them with, the checks before training and
their one-paragraph errors, the PolyLoss example."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from losslab.errors import LosslabError
from losslab.losses import functional
from losslab.losses.build import build_losses
from losslab.losses.user import INPUTS, synthetic_batch, user_loss
from losslab.modeling.detectors import create_detector
from losslab.modeling.heads import set_losses
from losslab.tasks.detection import DETECTION
from losslab.training.loop import named_losses

EXAMPLE = Path(__file__).parents[2] / "examples" / "polyloss"
CPU = torch.device("cpu")


def custom(target: str, **params) -> dict:
    return {"name": "custom", "_target_": target, **params}


# The built-in default of every component of each architecture (Mask R-CNN has Faster R-CNN's and a mask head),
# and a user's copy of it (conftest's USER_LOSSES).
COPIES = {
    "mask_rcnn": {"cls": custom("userloss.ce"), "box": custom("userloss.smooth_l1"),
                  "objectness": custom("userloss.objectness_bce"), "mask": custom("userloss.MaskBCE")},
    "retinanet": {"cls": custom("userloss.sigmoid_focal"), "box": custom("userloss.decoded_l1")},
}


def _batch():
    images = [torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    masks = torch.zeros(2, 48, 48, dtype=torch.uint8)
    masks[0, 10:30, 8:40] = 1
    masks[1, 2:20, 24:46] = 1
    targets = [{"boxes": torch.tensor([[8.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([2]), "masks": masks[:1]},
               {"boxes": torch.tensor([[24.0, 2.0, 46.0, 20.0], [4.0, 30.0, 20.0, 44.0]]),
                "labels": torch.tensor([1, 3]), "masks": torch.cat([masks[1:], masks[:1]])}]
    return images, targets


def _losses(model, images, targets):
    torch.manual_seed(1)  # the RPN and RoI heads sample at random
    return {name: value.item() for name, value in named_losses(model(images, targets)).items()}


@pytest.mark.parametrize("arch", list(COPIES))
def test_user_copies_of_the_default_losses_give_torchvisions_losses(arch, user_folder):
    torch.manual_seed(0)
    model = create_detector(arch, "resnet18_fpn", 3, build_losses(arch, {}, {}), min_size=48, max_size=48,
                            box_batch_size_per_image=16).train()
    images, targets = _batch()
    built_in = _losses(model, images, targets)
    set_losses(model, build_losses(arch, COPIES[arch], {"box_regression": 2.0}))  # weights apply as to built-ins
    copied = _losses(model, images, targets)
    copied["box_regression"] /= 2
    copied["loss"] -= copied["box_regression"]
    assert copied == pytest.approx(built_in, rel=1e-5)
    if arch == "retinanet":  # a loss without `reduction` returns the mean; RetinaNet sums over the anchors
        set_losses(model, build_losses(arch, {"cls": custom("userloss.sigmoid_focal_mean")}, {}))
        assert _losses(model, images, targets) == pytest.approx(built_in, rel=1e-5)


def test_the_sections_other_keys_are_the_functions_or_the_classs_keyword_arguments(user_folder):
    logits, labels = synthetic_batch("cls", "rcnn", 3, CPU)
    scaled = user_loss("cls", "rcnn", custom("userloss.scaled_ce", scale=3.0))
    assert scaled(logits, labels).item() == pytest.approx(3 * F.cross_entropy(logits, labels).item(), rel=1e-6)
    mask_logits, mask_targets = synthetic_batch("mask", "rcnn", 3, CPU)
    module = user_loss("mask", "rcnn", custom("userloss.MaskBCE", weight=0.5))
    expected = 0.5 * F.binary_cross_entropy_with_logits(mask_logits, mask_targets)
    assert module(mask_logits, mask_targets).item() == pytest.approx(expected.item(), rel=1e-6)
    empty = torch.zeros(0, 28, 28, requires_grad=True)  # no positive proposal: a zero on the graph, loss not called
    zero = module(empty, torch.zeros(0, 28, 28))
    assert zero.item() == 0 and zero.requires_grad


def test_under_mixed_precision_a_user_loss_gets_float32_and_runs_outside_autocast(user_folder):
    # Under autocast the product below would be bfloat16.
    (user_folder / "dtypes.py").write_text("import torch\n\n\ndef seen(logits, labels):\n"
                                           "    assert logits.dtype == torch.float32, logits.dtype\n"
                                           "    return (logits @ logits.T).mean()\n")
    logits, labels = synthetic_batch("cls", "rcnn", 3, CPU)
    loss = user_loss("cls", "rcnn", custom("dtypes.seen"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(logits.bfloat16(), labels)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx((logits.bfloat16().float() @ logits.bfloat16().float().T).mean().item())


def test_the_working_folder_is_importable_under_any_entry_point(user_folder, monkeypatch):
    here = os.getcwd()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or os.curdir) != here])
    loss = user_loss("cls", "rcnn", custom("userloss.ce"))
    assert loss.origin == str(user_folder / "userloss.py") and sys.path[0] == here


def test_the_check_before_training_leaves_the_random_streams_as_they_were(user_folder):
    (user_folder / "noisy.py").write_text("import torch\nimport torch.nn.functional as F\n\n\ndef ce(logits, labels):\n"
                                          "    return F.cross_entropy(logits + torch.rand(1), labels)\n")
    torch.manual_seed(0)
    state = torch.get_rng_state()
    base = {"cls": custom("noisy.ce"), "box": {"name": "default"}}
    phase = {**base, "box": custom("userloss.smooth_l1")}  # a loss phase: the base's cls, its own box loss
    checked = DETECTION.check_user_losses({"arch": "faster_rcnn"}, [base, phase], 3, CPU)
    assert [loss.target for loss in checked] == ["noisy.ce", "userloss.smooth_l1"]  # each checked once
    assert torch.equal(torch.get_rng_state(), state)


BROKEN = '''
import torch
import torch.nn.functional as F

NUMBER = 3


def needs_margin(logits, labels, *, margin):
    return F.multi_margin_loss(logits, labels, margin=margin)


def one_input(logits):
    return logits.sum()


def per_row(logits, labels):
    return F.cross_entropy(logits, labels, reduction="none")


def nan(logits, labels):
    return F.cross_entropy(logits, labels) * float("nan")


def detached(logits, labels):
    return F.cross_entropy(logits, labels).detach()


def constant(logits, labels):
    return torch.ones((), requires_grad=True)


def infinite_gradient(logits, labels):
    return (logits * 0).sqrt().sum()


def raises(logits, labels):
    raise ValueError("labels must be one-hot")


def number(logits, labels):
    return 1.0


class NeedsWeight:
    def __init__(self, weight):
        self.weight = weight

    def __call__(self, logits, labels):
        return self.weight * F.cross_entropy(logits, labels)


class NotCallable:
    pass
'''

ERRORS = [
    ("nosuchmodule.loss", {}, r"could not import nosuchmodule \(No module named 'nosuchmodule'\); the working folder"),
    ("broken.missing", {}, r"module broken \(.*broken.py\) has no attribute 'missing'"),
    ("broken.NUMBER", {}, "names an object of type int, not a function or class"),
    ("poly1_ce", {}, "expected MODULE.NAME"),
    ("subprocess.Popen", {"args": "touch pwned"}, "subprocess is part of Python's standard library"),
    ("failing_import.loss", {}, r"importing failing_import raised RuntimeError: no GPU here"),
    ("broken.per_row", {"epsilon": 2.0}, "unknown parameter 'epsilon': broken.per_row takes no parameters"),
    ("broken.needs_margin", {}, r"needs parameter 'margin'; set it with \+loss.cls.margin=VALUE"),
    ("broken.needs_margin", {"logits": 1}, "parameter 'logits' is where broken.needs_margin receives logits, labels"),
    ("broken.needs_margin", {"margin": 1, "reduction": "sum"}, "reduction is not a parameter to set"),
    ("broken.one_input", {}, r"cannot be called as \(logits, labels\): too many positional arguments"),
    ("broken.per_row", {}, r"returned shape \[8\] instead of a scalar \(shape \[\]\) on a synthetic batch "
                           r"\(logits \[8, 4\], labels \[8\]\)"),
    ("broken.nan", {}, "returned nan on a synthetic batch"),
    ("broken.detached", {}, r"returned a tensor without gradient .* \(no .item\(\), .detach\(\)"),
    ("broken.constant", {}, r"does not depend on logits \(no gradient reaches it\)"),
    ("broken.infinite_gradient", {}, "its gradient with respect to logits has NaN or infinite values"),
    ("broken.raises", {}, "raised ValueError: labels must be one-hot"),
    ("broken.number", {}, "returned a float instead of a scalar tensor"),
    ("broken.NeedsWeight", {}, r"broken.NeedsWeight\(...\) needs parameter 'weight'"),
    ("broken.NeedsWeight", {"weight": 1.0, "bias": 2}, r"unknown parameter 'bias': broken.NeedsWeight\(...\) takes "
                                                        "weight"),
    ("broken.NotCallable", {}, "NotCallable instances are not callable"),
]


@pytest.mark.parametrize(("target", "params", "message"), ERRORS)
def test_each_mistake_in_a_user_loss_is_one_error_naming_component_target_and_problem(target, params, message,
                                                                                    user_folder):
    (user_folder / "broken.py").write_text(BROKEN)
    (user_folder / "failing_import.py").write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(LosslabError) as raised:
        DETECTION.check_user_losses({"arch": "faster_rcnn"}, [{"cls": custom(target, **params)}], 3, CPU)
    text = str(raised.value)
    assert text.startswith(f"loss.cls._target_={target} (classification loss): "), text
    assert "\n" not in text and 'docs/losses.md, "Your own loss"' in text
    assert len(re.findall(message, text)) == 1, text
    assert not (user_folder / "pwned").exists()


@pytest.mark.parametrize("key", list(INPUTS))
def test_the_synthetic_batch_has_the_shapes_and_dtypes_of_the_contract(key):
    inputs = synthetic_batch(key, "rcnn", 5, CPU)
    first = inputs[0]
    assert first.requires_grad and first.dtype == torch.float32
    if key == "cls":
        assert first.shape == (8, 6) and inputs[1].dtype == torch.int64 and set(inputs[1].tolist()) & {0}
    elif key == "objectness":
        assert first.shape == (8,) and set(inputs[1].tolist()) == {0.0, 1.0}
    elif key == "centerness":  # FCOS: soft targets in [0, 1]
        assert first.shape == inputs[1].shape == (8,) and ((inputs[1] >= 0) & (inputs[1] <= 1)).all()
        assert inputs[1].unique().numel() == 8
    elif key == "mask":
        assert first.shape == inputs[1].shape == (3, 28, 28)
    elif key == "pixel":  # C = 5 pixel classes, background included; 255 marks ignored pixels
        assert first.shape == (2, 5, 8, 8) and inputs[1].shape == (2, 8, 8) and inputs[1].dtype == torch.int64
        assert set(inputs[1].unique().tolist()) <= {*range(5), 255} and 255 in inputs[1].tolist()[0][0]
    else:
        pred, target, anchors, box_coder = inputs
        assert pred.shape == target.shape == anchors.shape == (4, 4) and (anchors[:, 2:] > anchors[:, :2]).all()
        assert box_coder.weights == (10.0, 10.0, 5.0, 5.0)
        decoded = box_coder.decode_single(target, anchors)
        assert (decoded[:, 2:] > decoded[:, :2]).all()  # the targets decode to real boxes near the anchors


def _example():
    spec = importlib.util.spec_from_file_location("polyloss", EXAMPLE / "polyloss.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_polyloss_example_is_poly1_and_reduces_to_the_built_in_losses_at_epsilon_0():
    polyloss = _example()
    # One RoI, p_y = 3/4: CE = -log 0.75, Poly-1 adds epsilon (1 - 0.75).
    logits, label = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([1])
    assert polyloss.poly1_cross_entropy(logits, label, epsilon=2.0).item() == pytest.approx(-math.log(0.75) + 0.5)
    # One anchor of class 1, logits 0: every p_t = 1/2; focal terms (0.75 + 0.25) * 0.25 * log 2, Poly-1 terms
    # epsilon * 0.5^3 per class.
    value = polyloss.poly1_focal(torch.zeros(1, 2), label, epsilon=1.0, reduction="sum").item()
    assert value == pytest.approx(0.25 * math.log(2) + 2 * 0.125)
    logits, labels = synthetic_batch("cls", "rcnn", 3, CPU)
    for reduction in ("mean", "sum"):
        assert polyloss.poly1_cross_entropy(logits, labels, epsilon=0.0, reduction=reduction).item() == \
            pytest.approx(functional.cross_entropy(logits, labels, reduction=reduction).item(), rel=1e-6)
        assert polyloss.poly1_focal(logits, labels, epsilon=0.0, reduction=reduction).item() == \
            pytest.approx(functional.sigmoid_focal(logits, labels, reduction=reduction).item(), rel=1e-6)

"""Loss functions against hand-computed values and references, and the wiring into torchvision."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead

from conftest import tiny_config
from losslab import build_model
from losslab.errors import LosslabError
from losslab.losses import functional
from losslab.losses.build import ComponentLosses, build_losses
from losslab.modeling.detectors import SCRATCH, anchor_generator, create_detector, feature_pyramid
from losslab.training.loop import named_losses


def _batch(size=64, seed=0):
    from losslab.data.shapes import ShapesDataset

    dataset = ShapesDataset(num_images=2, image_size=size, min_objects=1, max_objects=3, seed=seed)
    images, targets = zip(*(dataset[i] for i in range(2)), strict=True)
    return list(images), list(targets)


def _stock(arch: str, backbone: str = "resnet18_fpn", size: int = 64):
    """The same detector built with torchvision's own heads and losses."""
    features = feature_pyramid(backbone, SCRATCH, None, for_retinanet=arch == "retinanet")
    anchors = anchor_generator(arch, backbone)
    if arch == "retinanet":
        head = RetinaNetHead(features.out_channels, anchors.num_anchors_per_location()[0], 4)
        return RetinaNet(features, 4, min_size=size, max_size=size, anchor_generator=anchors, head=head)
    cls = FasterRCNN if arch == "faster_rcnn" else MaskRCNN
    return cls(features, 4, min_size=size, max_size=size, rpn_anchor_generator=anchors, box_batch_size_per_image=64)


@pytest.mark.parametrize("arch", ["faster_rcnn", "mask_rcnn", "retinanet"])
def test_default_losses_equal_stock_torchvision(arch):
    torch.manual_seed(0)
    ours = create_detector(arch, "resnet18_fpn", 3, build_losses(arch, {}, {}), min_size=64, max_size=64,
                           box_batch_size_per_image=64)
    stock = _stock(arch)
    stock.load_state_dict(ours.state_dict())
    images, targets = _batch()
    ours.train(), stock.train()
    torch.manual_seed(1)
    expected = stock(images, targets)
    torch.manual_seed(1)
    got = ours(images, targets)
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].item() == pytest.approx(expected[key].item(), abs=1e-6, rel=1e-6), key


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_loss_weights_scale_their_component_only(arch):
    images, targets = _batch()
    results = []
    for weight in (1.0, 2.5):
        torch.manual_seed(0)
        model = create_detector(arch, "resnet18_fpn", 3, build_losses(arch, {}, {"classification": weight}),
                                min_size=64, max_size=64, box_batch_size_per_image=64).train()
        torch.manual_seed(1)
        results.append(named_losses(model(images, targets)))
    plain, weighted = results
    assert weighted["classification"].item() == pytest.approx(2.5 * plain["classification"].item(), rel=1e-5)
    assert weighted["box_regression"].item() == pytest.approx(plain["box_regression"].item(), rel=1e-6)
    assert weighted["loss"].item() == pytest.approx(sum(v.item() for k, v in weighted.items() if k != "loss"))


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_configured_loss_is_the_one_the_heads_call(arch):
    calls = []
    defaults = build_losses(arch, {}, {})

    def spy(*args):
        calls.append(args)
        return defaults.classification(*args) * 0 + 42.0

    losses = ComponentLosses(**{**defaults.__dict__, "classification": spy})
    torch.manual_seed(0)
    model = create_detector(arch, "resnet18_fpn", 3, losses, min_size=64, max_size=64).train()
    got = named_losses(model(*_batch()))
    assert calls
    # RetinaNet calls it once per image and normalises by the foreground anchors; R-CNN once.
    if arch == "faster_rcnn":
        assert got["classification"].item() == 42.0
    else:
        assert len(calls) == 2


def test_focal_preset_picks_the_form_of_each_architecture():
    rcnn = build_losses("faster_rcnn", {"cls": {"name": "focal", "alpha": 0.25, "gamma": 2.0}}, {})
    retina = build_losses("retinanet", {"cls": {"name": "focal", "alpha": 0.25, "gamma": 2.0}}, {})
    assert rcnn.classification.func is functional.softmax_focal
    assert retina.classification.func is functional.sigmoid_focal
    model = build_model(tiny_config("loss=focal", "loss.cls.gamma=1.0"))
    assert model.roi_heads.losses.classification.keywords == {"alpha": 0.25, "gamma": 1.0, "reduction": "mean"}


def test_loss_errors_name_the_key_and_valid_choices():
    expected = r"loss.cls=svm is not a classification loss; expected one of \['default', 'ce'"
    with pytest.raises(LosslabError, match=expected):
        build_losses("faster_rcnn", {"cls": {"name": "svm"}}, {})
    with pytest.raises(LosslabError, match="loss.mask=dice: retinanet has no mask component"):
        build_losses("retinanet", {"mask": {"name": "dice"}}, {})
    with pytest.raises(LosslabError, match="loss.weights.mask=2.0: retinanet has no mask"):
        build_losses("retinanet", {}, {"mask": 2.0})
    # Defaults for components the architecture lacks are fine.
    assert build_losses("retinanet", {"mask": {"name": "default"}}, {"mask": 1.0}).mask is None

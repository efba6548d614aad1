"""Every architecture and backbone builds from scratch, with the dataset's classes, and no download."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet

from conftest import tiny_config
from losslab import build_model
from losslab.modeling.heads import LossRetinaNetHead, LossRoIHeads, LossRPN
from losslab.training.loop import named_losses

EXPECTED = {
    "faster_rcnn": (FasterRCNN, {"classification", "box_regression", "objectness", "rpn_box_regression"}),
    "mask_rcnn": (MaskRCNN, {"classification", "box_regression", "objectness", "rpn_box_regression", "mask"}),
    "retinanet": (RetinaNet, {"classification", "box_regression"}),
}


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.mark.parametrize("arch", list(EXPECTED))
def test_each_architecture_trains_with_its_components(arch, no_downloads):
    model = build_model(tiny_config(f"model={arch}"))
    cls, components = EXPECTED[arch]
    assert isinstance(model, cls)
    if arch == "retinanet":
        assert isinstance(model.head, LossRetinaNetHead)
        assert model.head.classification_head.num_classes == 4  # 3 shapes + background
    else:
        assert isinstance(model.rpn, LossRPN) and isinstance(model.roi_heads, LossRoIHeads)
        assert model.roi_heads.box_predictor.cls_score.out_features == 4
        assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 32  # model.box_batch_size_per_image
    assert isinstance(next(m for m in model.modules() if "BatchNorm" in type(m).__name__), torch.nn.BatchNorm2d)
    images = [torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2]),
                "masks": torch.zeros(1, 64, 64, dtype=torch.uint8)}]
    losses = named_losses(model.train()(images, targets))
    assert set(losses) == components | {"loss"}
    assert all(torch.isfinite(v) for v in losses.values())
    detections = model.eval()(images)
    assert {"boxes", "labels", "scores"} <= set(detections[0])


@pytest.mark.parametrize("backbone", ["resnet50_fpn", "mobilenet_v3_fpn"])
@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_other_backbones_build_and_run(arch, backbone, no_downloads):
    model = build_model(tiny_config(f"model={arch}", f"model.backbone={backbone}"))
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])
    assert set(out[0]) >= {"boxes", "scores", "labels"}
    assert all(p.requires_grad for p in model.backbone.parameters())  # from scratch: everything trains


def test_num_classes_can_be_given_explicitly():
    model = build_model(tiny_config(), num_classes=7)
    assert model.roi_heads.box_predictor.cls_score.out_features == 8

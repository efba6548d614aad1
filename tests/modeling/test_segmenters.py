"""losslab's segmenters: torchvision's networks called as the detectors are, padding that counts nowhere, the
validation loss leaving them unchanged, and torchvision's COCO_VOC weights through TORCH_HOME only."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

from losslab.errors import LosslabError
from losslab.losses.segmentation_build import build_segmentation_losses
from losslab.modeling.segmentation_weights import cached_file, coco_voc_weights, load_start_weights
from losslab.modeling.segmenters import build_segmenter
from losslab.training.loop import validation_loss

LRASPP = {"arch": "lraspp", "backbone": "mobilenet_v3_large", "aux_loss": False, "pretrained": False,
          "weights": None, "download": False, "min_size": 48, "max_size": 64}
CE = {"pixel": {"name": "default"}}


def _segmenter(model=LRASPP, choices=CE, weights=None, classes=3):
    torch.manual_seed(0)
    losses = build_segmentation_losses(choices, weights or {"pixel": 1.0, "aux": 0.5}, aux=model.get("aux_loss"))
    return build_segmenter(model, losses, classes)


def test_train_mode_returns_each_component_and_eval_mode_a_mask_per_image_at_its_size():
    model = _segmenter({**LRASPP, "arch": "deeplabv3", "aux_loss": True})
    images = [torch.rand(3, 48, 48), torch.rand(3, 40, 60)]
    targets = [{"mask": torch.randint(0, 3, (48, 48))}, {"mask": torch.randint(0, 3, (40, 60))}]
    losses = model.train()(images, targets)
    assert set(losses) == {"pixel", "aux"} and all(v.ndim == 0 and v > 0 for v in losses.values())
    outputs = model.eval()(images)
    assert [o["mask"].shape for o in outputs] == [(48, 48), (40, 60)]
    assert torch.allclose(outputs[1]["probabilities"].sum(0), torch.ones(40, 60))
    assert torch.equal(outputs[1]["mask"], outputs[1]["probabilities"].argmax(0))


def test_padding_counts_nowhere_and_the_validation_loss_changes_nothing():
    model = _segmenter()
    small, large = torch.rand(3, 48, 48), torch.rand(3, 48, 64)
    small_target = {"mask": torch.randint(0, 3, (48, 48))}
    large_target = {"mask": torch.full((48, 64), 255)}
    alone = validation_loss(model, [([small], [small_target])], torch.device("cpu"))
    large_alone = validation_loss(model, [([large], [large_target])], torch.device("cpu"))
    # Batched beside a wider image, the small one is not padded: each image is its own forward, and the loss is
    # the mean of the images' losses (an image whose every pixel is ignored scores 0).
    before = {k: v.clone() for k, v in model.state_dict().items()}
    together = validation_loss(model, [([small, large], [small_target, large_target])], torch.device("cpu"))
    assert large_alone["pixel"] == 0.0
    assert together["pixel"] == pytest.approx((alone["pixel"] + large_alone["pixel"]) / 2, rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_coco_voc_weights_load_from_torch_home_with_the_class_layers_left_random(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = {**LRASPP, "weights": "coco_voc"}
    with pytest.raises(LosslabError, match=r"lraspp_mobilenet_v3_large-d234d4ea.pth.*model.download=false forbids"):
        load_start_weights(_segmenter(model).network, model)
    torch.manual_seed(1)
    voc = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                      num_classes=21)
    path = cached_file(coco_voc_weights("lraspp", "mobilenet_v3_large"))
    path.parent.mkdir(parents=True)
    torch.save(voc.state_dict(), path)
    segmenter = _segmenter(model, classes=4)
    loaded = load_start_weights(segmenter.network, model)
    counted = [name for name in voc.state_dict() if not name.endswith("num_batches_tracked")]  # as for detectors
    assert loaded["tensors"] == {"loaded": len(counted) - 4, "reinitialised": 4}
    state = segmenter.network.state_dict()
    assert torch.equal(state["backbone.0.0.weight"], voc.state_dict()["backbone.0.0.weight"])
    assert state["classifier.low_classifier.weight"].shape[0] == 4
    torch.save({"backbone.0.0.weight": torch.zeros(1)}, path)  # another model's weights
    with pytest.raises(LosslabError, match=r"do not fit model=lraspp model.backbone=mobilenet_v3_large: \d+ tensors"):
        load_start_weights(segmenter.network, model)


def test_a_segmenter_start_logs_its_parameter_count_as_a_detector_start_does(caplog):
    caplog.set_level(logging.INFO, logger="losslab")
    segmenter = _segmenter()
    start = load_start_weights(segmenter.network, LRASPP)
    total = sum(p.numel() for p in segmenter.network.parameters())
    assert start["weights"] is None and start["tensors"] is None  # nothing loaded: random weights
    assert start["parameters"] == start["trainable_parameters"] == total and start["batch_norm_layers"] > 0
    assert f"{total:,} of {total:,} parameters train" in caplog.text

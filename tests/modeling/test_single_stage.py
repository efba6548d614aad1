"""FCOS, SSD300-VGG16 and SSDlite320-MobileNetV3: torchvision's own losses by default (the numbers of torchvision's
stock models), every component's every loss trains a step, users' losses by `_target_` (SSD's classification loss
receives the hard-mined boxes, FCOS's centre-ness loss soft targets), exports checked against the PyTorch model, and
COCO weights from torchvision's cache with head surgery; no test touches the network.

SSD300 runs at 300 x 300 (VGG16: about 35 GFLOPs an image), so its tests take one image and few steps; its loss path is
SSDlite's (the same LossSSD.compute_loss and loss family), which takes every loss."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import detection
from torchvision.models.detection import FCOS
from torchvision.ops.misc import FrozenBatchNorm2d

from conftest import tiny_config
from losslab import build_model
from losslab.config.validation import validate
from losslab.errors import LosslabError
from losslab.evaluation.exporting import detection_export, save
from losslab.losses.build import ComponentLosses, build_losses
from losslab.losses.catalogue import ARCH_COMPONENTS, CATALOGUE, CONFIG_KEYS
from losslab.modeling.dense_heads import LossFCOSHead, LossSSD
from losslab.modeling.detectors import SCRATCH, create_detector, feature_pyramid
from losslab.modeling.heads import get_losses, set_losses, with_stock_heads
from losslab.modeling.start import load_start_weights, locate_start_weights
from losslab.modeling.torchvision_weights import cached_file, coco_weights
from losslab.training.loop import named_losses

BACKBONE = {"fcos": "resnet18_fpn", "ssdlite": "mobilenet_v3_large", "ssd": "vgg16"}
SIZE = {"fcos": 64, "ssdlite": 128, "ssd": 300}
# A user's loss for each config key, named by _target_ (a built-in function, called as a user's would be).
USER = {"cls": "losslab.losses.functional.cross_entropy", "box": "losslab.losses.functional.giou",
        "centerness": "losslab.losses.centerness.centerness_l1"}


def _batch(count: int = 2):
    from losslab.data.shapes import ShapesDataset

    dataset = ShapesDataset(num_images=count, image_size=64, min_objects=1, max_objects=3, seed=0)
    images, targets = zip(*(dataset[i] for i in range(count)), strict=True)
    return list(images), list(targets)


def _ours(arch: str, losses: ComponentLosses | None = None, size: int | None = None):
    torch.manual_seed(0)
    side = size or SIZE[arch]
    return create_detector(arch, BACKBONE[arch], 3, losses or build_losses(arch, {}, {}), min_size=side,
                           max_size=side)


def _stock(arch: str):
    """torchvision's own model of `arch` for 3 classes + background, its own head and loss."""
    if arch == "fcos":  # torchvision's FCOS on the same pyramid, with its default anchors and head
        return FCOS(feature_pyramid("resnet18_fpn", SCRATCH, None, for_retinanet=True), 4, min_size=64, max_size=64)
    builder = detection.ssd300_vgg16 if arch == "ssd" else detection.ssdlite320_mobilenet_v3_large
    return builder(weights=None, weights_backbone=None, num_classes=4)


@pytest.mark.parametrize("arch", ["fcos", "ssdlite", "ssd"])
def test_default_losses_are_torchvisions_own(arch):
    ours = _ours(arch, size=320 if arch == "ssdlite" else None)  # torchvision's SSDlite320 takes 320 only
    stock = _stock(arch)
    stock.load_state_dict(ours.state_dict())
    images, targets = _batch()
    ours.train(), stock.train()
    with torch.no_grad():
        expected = stock(images, targets)
        got = ours(images, targets)
    assert set(got) == set(expected) == {"classification", "bbox_regression", *(["bbox_ctrness"] * (arch == "fcos"))}
    for key in expected:
        assert expected[key] > 0
        assert got[key].item() == pytest.approx(expected[key].item(), abs=1e-6, rel=1e-6), key


# The catalogue's losses that are torchvision's own default for the architecture (the same callable as `default`).
TORCHVISIONS = {("fcos", "cls", "focal"), ("fcos", "box", "giou"), ("fcos", "centerness", "bce"),
                ("ssdlite", "cls", "ce")}


def _cases(arch: str):
    keys = [key for key, component in CONFIG_KEYS.items() if component in ARCH_COMPONENTS[arch]]
    for key in keys:
        for name in [*CATALOGUE[key], "custom"]:
            yield key, name


@pytest.mark.parametrize("arch", ["fcos", "ssdlite"])
def test_each_components_every_loss_trains_a_step(arch):
    model = _ours(arch, size=64).train()
    images, targets = _batch(1 if arch == "fcos" else 2)  # SSDlite's BatchNorm over its 1x1 maps needs 2 images
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for key, name in _cases(arch):
        spec = {"name": name, "_target_": USER[key]} if name == "custom" else {"name": name}
        chosen = build_losses(arch, {key: spec}, {}, class_counts=[3, 1, 2])
        component = CONFIG_KEYS[key]
        set_losses(model, chosen)
        before = [p.detach().clone() for p in model.head.parameters()]
        losses = named_losses(model(images, targets))
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        assert get_losses(model) is chosen
        assert set(losses) == {"loss", *ARCH_COMPONENTS[arch]}, (key, name)
        assert all(torch.isfinite(v) for v in losses.values()), (key, name)
        assert losses[component] > 0, (key, name)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.head.parameters(), strict=True)), (key, name)
        # Each choice is another callable than torchvision's default, except the default's own name (the functions'
        # values are tested in tests/losses).
        assert repr(getattr(chosen, component)) != repr(getattr(build_losses(arch, {}, {}), component)) or \
            name in ("default", "custom") or (arch, key, name) in TORCHVISIONS


def test_ssd300_trains_a_step_with_swapped_losses_and_its_own_by_target():
    losses = build_losses("ssd", {"cls": {"name": "focal"}, "box": {"name": "custom", "_target_": USER["box"]}}, {})
    model = build_model(tiny_config("model=ssd", "model.min_size=300", "model.max_size=300", "model.freeze=backbone"),
                        num_classes=3)
    set_losses(model, losses)
    assert not any(p.requires_grad for p in model.backbone.features.parameters())
    images, targets = _batch(1)
    step = named_losses(model.train()(images, targets))
    step["loss"].backward()
    assert set(step) == {"loss", "classification", "box_regression"} and all(torch.isfinite(v) for v in step.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.head.parameters())


def test_ssds_classification_loss_receives_the_mined_boxes_and_fcos_centerness_soft_targets():
    seen = {}
    defaults = build_losses("ssdlite", {}, {})

    def spy(logits, labels):
        seen["labels"] = labels
        return defaults.classification(logits, labels)

    model = _ours("ssdlite", ComponentLosses(**{**defaults.__dict__, "classification": spy}), size=128).train()
    images, targets = _batch()
    model(images, targets)
    labels = seen["labels"]
    positives = int((labels > 0).sum())
    anchors = sum(model.anchor_generator.num_anchors_per_location()[i] * s * s
                  for i, s in enumerate((8, 4, 2, 1, 1, 1)))  # SSDlite's six feature maps at 128 px
    assert positives > 0 and (labels == 0).sum() == 3 * positives  # the 3:1 hard negatives, not all anchors
    assert len(labels) < anchors and torch.all(labels[:positives] > 0)  # foreground first

    centerness = {}
    fcos_defaults = build_losses("fcos", {}, {})

    def centerness_spy(logits, targets):
        centerness["targets"] = targets
        return fcos_defaults.centerness(logits, targets)

    fcos = _ours("fcos", ComponentLosses(**{**fcos_defaults.__dict__, "centerness": centerness_spy})).train()
    fcos(images, targets)
    soft = centerness["targets"]
    assert len(soft) > 0 and torch.all((soft > 0) & (soft <= 1)) and soft.unique().numel() > 1


def test_user_losses_of_the_new_components_are_checked_on_their_shapes():
    from losslab.losses.components import check_user_losses

    for arch, key in (("fcos", "centerness"), ("fcos", "box"), ("ssd", "cls")):
        checked = check_user_losses((key,), {"fcos": "fcos", "ssd": "ssd"}[arch],
                                    [{key: {"name": "custom", "_target_": USER[key]}}], 3, torch.device("cpu"))
        assert len(checked) == 1
    with pytest.raises(LosslabError, match=r"loss.centerness._target_=losslab.losses.functional.giou"):
        check_user_losses(("centerness",), "fcos", [{"centerness": {"name": "custom",
                                                                    "_target_": "losslab.losses.functional.giou"}}],
                          3, torch.device("cpu"))
    with pytest.raises(LosslabError, match="ssd has no centerness component"):
        build_losses("ssd", {"centerness": {"name": "bce"}}, {})


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=ssd"], "SSD300 takes 300 x 300 images only"),
    (["model=ssdlite", "model.min_size=128", "model.max_size=200"], "set model.max_size=128 too"),
    (["model=fcos", "model.backbone=vgg16"], "expected resnet18_fpn or resnet50_fpn or mobilenet_v3_fpn"),
    (["model=ssd", "model.min_size=300", "model.max_size=300", "model.backbone=resnet50_fpn"], "expected vgg16"),
    (["model=fcos", "model.variant=v2", "model.backbone=resnet50_fpn"], "not of fcos"),
    (["model=ssdlite", "model.min_size=128", "model.max_size=128", "model.freeze=fpn"], "expected one of backbone"),
])
def test_bad_options_of_the_new_architectures_are_refused_naming_the_key(overrides, message):
    with pytest.raises(LosslabError, match=message):
        validate(tiny_config(*overrides))


def _calibrated(model):
    """`model` with BatchNorm statistics of a few images: a freshly initialised SSDlite (normal init, std 0.03) gives
    nearly constant features, hundreds of detections with one score, whose order any export may break differently."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None  # a cumulative average
        norm.reset_running_stats()
    model.train()
    with torch.no_grad():
        features = model.backbone(model.transform([torch.rand(3, 128, 128) for _ in range(4)])[0].tensors)
        model.head(list(features.values()))
    for norm in norms:
        norm.momentum = 0.03
    return model.eval()


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
@pytest.mark.parametrize("arch", ["fcos", "ssdlite", "ssd"])
def test_export_reproduces_the_model(arch, format, tmp_path):
    if format == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")
    model = _ours(arch)
    model = _calibrated(model) if arch == "ssdlite" else model.eval()
    exportable = detection_export(model, ["circle", "square", "triangle"], 0.5, 0.025, 0.003,
                                  swept_sizes=0 if arch == "ssd" else 2)
    assert not isinstance(exportable.model, LossSSD) and not isinstance(exportable.model.head, LossFCOSHead)
    predict = save(exportable, format, tmp_path / "model")
    differences = exportable.check([predict(image) for image in exportable.samples])  # raises when unfaithful
    assert differences.detections >= 10 and differences.unmatched == 0
    if format == "torchscript":
        assert differences.box == differences.score == 0
    square = exportable.samples[0].shape[-2:]
    assert exportable.metadata["input"]["min_size"] == SIZE[arch] and tuple(square) == (SIZE[arch],) * 2


@pytest.mark.parametrize("arch", ["fcos", "ssd", "ssdlite"])
def test_stock_heads_share_the_loss_models_weights_and_settings(arch):
    model = _ours(arch).eval()
    losses = get_losses(model)
    image = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        expected = model(image)[0]
        stock = with_stock_heads(model)
        got = stock(image)[0]
    assert losses.classification is not None
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert stock.score_thresh == {"fcos": 0.2, "ssd": 0.01, "ssdlite": 0.001}[arch]


COCO_KEYS = [("fcos", "resnet50_fpn", "v1"), ("ssd", "vgg16", "v1"), ("ssdlite", "mobilenet_v3_large", "v1")]
BUILDERS = {"fcos": detection.fcos_resnet50_fpn, "ssd": detection.ssd300_vgg16,
            "ssdlite": detection.ssdlite320_mobilenet_v3_large}
# Tensors re-initialised for 3 classes instead of COCO's 91: weight and bias of each class-specific conv.
REINITIALISED = {"fcos": 2, "ssd": 12, "ssdlite": 12}


@pytest.fixture
def offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a network call was made")

    for name in ("download_url_to_file", "load_state_dict_from_url"):
        monkeypatch.setattr(torch.hub, name, no_network)


@pytest.mark.parametrize("key", COCO_KEYS, ids="-".join)
def test_coco_weights_load_from_torchvisions_cache_with_head_surgery(key, tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    arch, backbone, _ = key
    torch.manual_seed(0)
    state = BUILDERS[arch](weights=None, weights_backbone=None).state_dict()  # random stand-ins, 91 COCO labels
    path = cached_file(coco_weights(*key))
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    side = {"fcos": 64, "ssd": 300, "ssdlite": 320}[arch]
    cfg = tiny_config(f"model={arch}", f"model.backbone={backbone}", "model.weights=coco", f"model.min_size={side}",
                      f"model.max_size={side}")
    validate(cfg)
    from omegaconf import OmegaConf

    options = OmegaConf.to_container(cfg.model)
    model = build_model(cfg, num_classes=3, start=False)
    start = load_start_weights(model, locate_start_weights(options), options)
    assert start["file"] == str(path)
    assert start["tensors"]["reinitialised"] == {"head.classification_head": REINITIALISED[arch]}
    assert start["tensors"]["missing"] == {} and start["tensors"]["unused"] == {}
    own = model.state_dict()
    loaded = [name for name in state
              if not name.endswith("num_batches_tracked") and own[name].shape == state[name].shape]
    assert all(torch.equal(own[name], state[name]) for name in loaded)
    assert sum(start["tensors"]["loaded"].values()) == len(loaded)
    # torchvision's choices for trained weights: FCOS freezes BatchNorm and trains 3 ResNet stages, SSD300 4 VGG
    # stages, SSDlite all 6.
    if arch == "fcos":
        assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.body.modules())
        assert {n.split(".")[0] for n, p in model.backbone.body.named_parameters() if p.requires_grad} == {
            "layer2", "layer3", "layer4"}
    else:
        frozen = [n for n, p in model.backbone.features.named_parameters() if not p.requires_grad]
        assert (len(frozen) > 0) == (arch == "ssd")
    assert start["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_ssdlite_leaves_out_a_lone_last_train_image_which_its_batch_norm_cannot_train_on():
    """SSDlite's last extra layers see 1x1 features at 320 px: a train batch of one image fails in BatchNorm, so
    such a last batch is left out for it (9 train images, batch 4: 2 steps), and kept for detectors without it."""
    from losslab import build_dataloaders, compose_config

    model = build_model(tiny_config("model=ssdlite", "model.min_size=128", "model.max_size=128")).train()
    images, targets = _batch(1)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model(images, targets)
    steps = {}
    for arch in ("ssdlite", "fcos"):
        cfg = compose_config([f"model={arch}", "data.num_images=18", "data.batch_size=4", "split.train=0.5"])
        loaders = build_dataloaders(cfg)
        steps[arch] = (len(loaders["train"].dataset), len(loaders["train"]))
    assert steps == {"ssdlite": (9, 2), "fcos": (9, 3)}

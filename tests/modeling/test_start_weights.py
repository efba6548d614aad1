"""model.weights: torchvision's COCO weights from a temporary TORCH_HOME (random-weight stand-ins saved under
torchvision's own file names, never downloaded), weights files and run folders, head surgery, freezing, and the
refusals; no test touches the network."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import urllib.request

import pytest
import torch
from torchvision.models import detection, resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from conftest import tiny_config
from losslab import build_model, run
from losslab.commands.evaluate import evaluate_run
from losslab.config.validation import validate
from losslab.errors import LosslabError
from losslab.modeling.heads import LossRetinaNetHead, LossRoIHeads, LossRPN, with_stock_heads
from losslab.modeling.start import load_start_weights, locate_start_weights
from losslab.modeling.surgery import CLASS_SPECIFIC
from losslab.modeling.torchvision_weights import cached_file, coco_weights
from losslab.modeling.weights import read_checkpoint
from losslab.reporting.comparison import list_runs

# torchvision's own builders: the reference architecture each COCO file belongs to.
TORCHVISION_BUILDERS = {
    ("faster_rcnn", "resnet50_fpn", "v1"): detection.fasterrcnn_resnet50_fpn,
    ("faster_rcnn", "resnet50_fpn", "v2"): detection.fasterrcnn_resnet50_fpn_v2,
    ("faster_rcnn", "mobilenet_v3_fpn", "v1"): detection.fasterrcnn_mobilenet_v3_large_fpn,
    ("mask_rcnn", "resnet50_fpn", "v1"): detection.maskrcnn_resnet50_fpn,
    ("mask_rcnn", "resnet50_fpn", "v2"): detection.maskrcnn_resnet50_fpn_v2,
    ("retinanet", "resnet50_fpn", "v1"): detection.retinanet_resnet50_fpn,
    ("retinanet", "resnet50_fpn", "v2"): detection.retinanet_resnet50_fpn_v2,
}
# Tensors re-initialised for 3 classes instead of COCO's 91: weight and bias of each class-specific layer.
REINITIALISED = {
    "faster_rcnn": {"roi_heads.box_predictor": 4},
    "mask_rcnn": {"roi_heads.box_predictor": 4, "roi_heads.mask_predictor": 2},
    "retinanet": {"head.classification_head": 2},
}


@pytest.fixture
def offline(monkeypatch):
    """Every way torch, torchvision or losslab could reach the network fails the test."""

    def no_network(*args, **kwargs):
        raise AssertionError("a network call was made")

    for owner, name in ((socket, "create_connection"), (socket.socket, "connect"), (urllib.request, "urlopen"),
                        (torch.hub, "download_url_to_file"), (torch.hub, "load_state_dict_from_url")):
        monkeypatch.setattr(owner, name, no_network)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def reference_state(key: tuple[str, str, str], seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of torchvision's own model for `key` (91 COCO labels), with random weights."""
    torch.manual_seed(seed)
    return TORCHVISION_BUILDERS[key](weights=None, weights_backbone=None).state_dict()


def save_as_coco_file(key: tuple[str, str, str], state: dict[str, torch.Tensor]):
    """Save `state` where torchvision keeps the COCO weights of `key` (TORCH_HOME/hub/checkpoints/<its file>)."""
    path = cached_file(coco_weights(*key))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def model_options(*overrides: str) -> dict:
    from omegaconf import OmegaConf

    cfg = tiny_config(*overrides)
    validate(cfg)
    return OmegaConf.to_container(cfg.model)


def coco_overrides(key: tuple[str, str, str], *more: str) -> list[str]:
    arch, backbone, variant = key
    return [f"model={arch}", f"model.backbone={backbone}", f"model.variant={variant}", "model.weights=coco", *more]


@pytest.mark.parametrize("key", list(TORCHVISION_BUILDERS), ids="-".join)
def test_coco_weights_load_from_torchvisions_cache_into_each_architecture(key, torch_home, offline):
    arch = key[0]
    state = reference_state(key)
    path = save_as_coco_file(key, state)
    options = model_options(*coco_overrides(key))
    model = build_model(tiny_config(*coco_overrides(key)), num_classes=3, start=False)
    start = load_start_weights(model, locate_start_weights(options), options)

    own = model.state_dict()
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue  # BatchNorm's step counter: frozen BatchNorm has none
        if name.startswith(CLASS_SPECIFIC):
            assert own[name].shape[0] in (4, 4 * 4, 9 * 4), name  # 3 classes + background (x4 box deltas, x9 anchors)
            assert own[name].shape[0] != tensor.shape[0], name
        else:
            assert torch.equal(own[name], tensor), name
    assert start["file"] == str(path) and path.parent == torch_home / "hub" / "checkpoints"
    assert start["tensors"]["reinitialised"] == REINITIALISED[arch]
    assert start["tensors"]["missing"] == {} and start["tensors"]["unused"] == {}
    counted = [n for n in own if not n.startswith(CLASS_SPECIFIC) and not n.endswith("num_batches_tracked")]
    assert sum(start["tensors"]["loaded"].values()) == len(counted)
    # The loss heads are the ones holding the loaded weights.
    heads = [model.head] if arch == "retinanet" else [model.rpn, model.roi_heads]
    assert all(isinstance(head, LossRetinaNetHead | LossRPN | LossRoIHeads) for head in heads)
    # torchvision's choices for trained weights: frozen BatchNorm, the backbone's last 3 layers train.
    body = model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    trainable = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    last_3_stages = {str(block) for block in range(7, 17)}  # MobileNetV3-Large: stages from blocks 7, 13, 16
    assert trainable == ({"layer2", "layer3", "layer4"} if key[1] == "resnet50_fpn" else last_3_stages)
    assert start["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert start["trainable_parameters"] < start["parameters"]


MOBILENET = ("faster_rcnn", "mobilenet_v3_fpn", "v1")  # the smallest COCO file


def test_a_missing_coco_file_says_which_file_where_to_put_it_and_how_to_get_it(torch_home, offline, monkeypatch):
    options = model_options(*coco_overrides(MOBILENET, "model.download=false"))
    expected = cached_file(coco_weights(*MOBILENET))
    with pytest.raises(LosslabError) as forbidden:
        locate_start_weights(options)
    message = str(forbidden.value)
    assert "model.download=false forbids downloading it" in message
    assert expected.name == "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    assert f"copy it to {expected}" in message and str(torch_home / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth" in message
    assert "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1" in message and "model.weights=/path/to/" in message

    def unreachable(address, timeout):
        assert address == ("download.pytorch.org", 443) and timeout <= 10
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(LosslabError, match="this machine cannot reach download.pytorch.org .Network is unreachable"):
        locate_start_weights({**options, "download": True})
    assert not expected.exists()


def test_an_allowed_download_goes_to_torchvisions_cache_with_its_hash_checked(torch_home, offline, monkeypatch):
    state = reference_state(MOBILENET)
    calls = []

    def download(url, destination, hash_prefix, progress):
        calls.append((url, destination, hash_prefix))
        torch.save(state, destination)

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: socket.socket())
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    options = model_options(*coco_overrides(MOBILENET))
    assert options["download"] is True  # the default
    path = locate_start_weights(options)
    assert calls == [("https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
                      str(torch_home / "hub" / "checkpoints" / "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"),
                      "fb6a3cc7")]
    assert locate_start_weights(options) == path and len(calls) == 1  # found in the cache the second time


def test_weights_of_another_architecture_or_variant_are_refused_naming_the_file_and_first_mismatches(tmp_path):
    retinanet_file = tmp_path / "retinanet_resnet50_fpn_coco-eeacb38b.pth"
    torch.save(reference_state(("retinanet", "resnet50_fpn", "v1")), retinanet_file)
    v2_file = tmp_path / "v2.pth"
    torch.save(reference_state(("faster_rcnn", "resnet50_fpn", "v2")), v2_file)
    classifier_file = tmp_path / "resnet50.pth"
    torch.save(resnet50().state_dict(), classifier_file)
    cases = {
        retinanet_file: ["backbone.fpn.inner_blocks.0.0.weight has shape [256, 512, 1, 1] there, [256, 256, 1, 1]",
                         "retinanet_resnet50_fpn_coco-eeacb38b.pth is torchvision's file for model=retinanet "
                         "model.backbone=resnet50_fpn model.variant=v1"],
        v2_file: ["backbone.fpn.inner_blocks.0.0.bias is not in the file"],
        classifier_file: ["none of its tensor names is one of this model's"],
    }
    for file, expected in cases.items():
        cfg = tiny_config("model.backbone=resnet50_fpn", f"model.weights={file}")
        with pytest.raises(LosslabError) as refused:
            build_model(cfg, num_classes=3)
        message = str(refused.value)
        assert message.startswith(f"the weights in {file} do not fit model=faster_rcnn model.backbone=resnet50_fpn "
                                  "model.variant=v1:")
        assert all(part in message for part in expected), message


def test_corrupt_files_pickled_objects_and_wrong_paths_are_refused_clearly(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a weights file")
    pickled = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole module: only unpickling it could read it
    not_tensors = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_tensors)
    cases = {corrupt: f"weights file {corrupt} could not be read as weights: it is not a file torch.save wrote",
             pickled: "could not be read as weights: it holds a Python object (torch.nn.modules.linear.Linear) that "
                      "a safe load refuses",
             not_tensors: "holds list, not a state dict",
             tmp_path / "nowhere.pth": "no such file or folder; expected coco",
             tmp_path: "the folder has no checkpoints/best.pt"}
    for weights, message in cases.items():
        with pytest.raises(LosslabError, match=message.replace("(", r"\(").replace(")", r"\)")):
            build_model(tiny_config(f"model.weights={weights}"), num_classes=3)


@pytest.fixture(scope="module")
def source_run(module_tmp_path):
    """A finished Faster R-CNN run on the built-in shapes: what a later run starts from."""
    return run(tiny_config(run_dir=module_tmp_path)).run_dir


def test_a_run_folder_starts_a_model_with_its_best_weights_and_new_heads_for_other_classes(source_run, caplog):
    caplog.set_level(logging.INFO, logger="losslab")
    best = read_checkpoint(source_run / "checkpoints" / "best.pt")["model"]
    model = build_model(tiny_config(f"model.weights={source_run}"), num_classes=5)
    for name, tensor in model.state_dict().items():
        if name.startswith("roi_heads.box_predictor."):
            assert tensor.shape[0] in (6, 24) and best[name].shape[0] in (4, 16)  # 5 (3) classes + background
        else:
            assert torch.equal(tensor, best[name]), name
    assert "0 missing" in caplog.text and "4 re-initialised (roi_heads.box_predictor 4)" in caplog.text

    # A Faster R-CNN run starts a Mask R-CNN: its mask branch is missing from the weights and keeps its init.
    options = model_options("model=mask_rcnn", f"model.weights={source_run}")
    mask_model = build_model(tiny_config("model=mask_rcnn"), num_classes=3, start=False)
    start = load_start_weights(mask_model, locate_start_weights(options), options)
    assert start["tensors"]["missing"] == {"roi_heads.mask_head": 8, "roi_heads.mask_predictor": 4}
    assert start["tensors"]["reinitialised"] == {}
    with pytest.raises(LosslabError, match="That run trained model=faster_rcnn model.backbone=resnet18_fpn "
                                           "model.variant=v1: start with the same model options"):
        build_model(tiny_config("model=retinanet", f"model.weights={source_run}"), num_classes=3)


def test_a_fine_tuned_run_records_its_start_resumes_and_serves_inference_without_it(source_run, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="losslab")
    source = tmp_path / "source"
    shutil.copytree(source_run, source)
    fine_tuned = run(tiny_config(f"model.weights={source}", "model.freeze=backbone", "eval.every=0",
                                 "trainer.keep_resume_state=true", run_dir=tmp_path / "fine_tuned"))
    start = fine_tuned.summary["start"]
    assert start["weights"] == str(source) and start["file"] == str(source / "checkpoints" / "best.pt")
    assert start["tensors"]["reinitialised"] == {} and start["tensors"]["loaded"]["backbone.body"] > 0
    built = build_model(tiny_config(f"model.weights={source}", "model.freeze=backbone"), num_classes=3, start=False)
    body = sum(p.numel() for p in built.backbone.body.parameters())
    assert start["parameters"] - start["trainable_parameters"] == body  # the frozen backbone, nothing else
    assert f"{start['trainable_parameters']:,} of {start['parameters']:,} parameters train" in caplog.text
    (row,) = [row for row in list_runs(tmp_path) if row["run_dir"] == str(fine_tuned.run_dir)]
    assert row["start"] == str(source)

    shutil.rmtree(source)  # neither a resume nor inference needs the start weights again
    caplog.clear()
    resumed = run(tiny_config(f"resume={fine_tuned.run_dir}"), overrides=["trainer.max_epochs=2"])
    assert resumed.status == "completed" and resumed.summary["start"] == start
    assert f"model.weights={source} is not loaded again" in caplog.text
    evaluate_run(fine_tuned.run_dir, split="test", progress=False)
    evaluated = json.loads((fine_tuned.run_dir / "eval_test" / "metrics.json").read_text())
    assert evaluated["images"] == 2 and evaluated["epoch"] == resumed.summary["best_epoch"] and "mAP" in evaluated


def test_freeze_keeps_the_named_parts_and_their_batch_norm_statistics_fixed(tmp_path):
    from losslab.training.loop import train_one_epoch
    from losslab.training.optim import build_optimizer

    cfg = tiny_config("model.freeze=[backbone,fpn]")
    model = build_model(cfg, num_classes=3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    frozen = {name: tensor.clone() for name, tensor in model.backbone.state_dict().items()}
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.startswith(("rpn.", "roi_heads.")) for name in trainable)
    rpn_before = model.rpn.head.cls_logits.weight.clone()
    optimizer = build_optimizer({"_target_": "torch.optim.SGD", "lr": 0.01, "exempt_norm_and_bias": False}, model)
    images = [torch.rand(3, 64, 64) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])} for _ in range(2)]
    train_one_epoch(model, optimizer, [(images, targets)], torch.device("cpu"), 1, progress=False)
    assert all(torch.equal(tensor, frozen[name]) for name, tensor in model.backbone.state_dict().items())
    assert not torch.equal(model.rpn.head.cls_logits.weight, rpn_before)
    with pytest.raises(LosslabError, match="model.freeze=rpn: expected one of backbone, fpn"):
        validate(tiny_config("model=retinanet", "model.freeze=rpn"))


def test_the_finetune_preset_trains_from_coco_weights_without_the_network(torch_home, offline, tmp_path):
    key = ("faster_rcnn", "resnet50_fpn", "v1")
    save_as_coco_file(key, reference_state(key))
    result = run(tiny_config("experiment=finetune", "model.min_size=64", "model.max_size=64",
                             "trainer.max_epochs=1", "trainer.keep_resume_state=true", run_dir=tmp_path / "run"))
    assert result.status == "completed"
    assert result.summary["start"]["weights"] == "coco"
    assert result.summary["start"]["tensors"]["reinitialised"] == {"roi_heads.box_predictor": 4}
    assert "val/mAP" in result.history[0] and result.summary["monitor"] == "val/mAP"
    state = read_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert state["optimizer"]["param_groups"][0]["momentum"] == 0.9  # SGD


def test_v2_retinanet_keeps_its_group_norm_head_when_given_stock_heads_for_export():
    model = build_model(tiny_config("model=retinanet", "model.backbone=resnet50_fpn", "model.variant=v2"),
                        num_classes=3).eval()
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.head.modules())
    image = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        expected = model(image)[0]
        stock = with_stock_heads(model)(image)[0]
    assert type(model.head).__name__ == "RetinaNetHead"
    assert all(torch.equal(expected[k], stock[k]) for k in expected)


def test_the_start_line_names_the_backbone_layers_that_train_not_null(source_run, caplog):
    caplog.set_level(logging.INFO, logger="losslab")
    body = build_model(tiny_config(f"model.weights={source_run}"), num_classes=3).backbone.body
    assert "model.trainable_backbone_layers: null = 3 with trained weights)" in caplog.text
    training = [name for name in ("conv1", "layer1", "layer2", "layer3", "layer4")
                if any(p.requires_grad for p in getattr(body, name).parameters())]
    assert training == ["layer2", "layer3", "layer4"]  # what the line says
    caplog.clear()
    build_model(tiny_config(), num_classes=3)  # from scratch: resnet18's 5 layers
    assert "model.trainable_backbone_layers: null = 5 from scratch)" in caplog.text
    caplog.clear()
    build_model(tiny_config(f"model.weights={source_run}", "model.trainable_backbone_layers=2"), num_classes=3)
    assert "model.trainable_backbone_layers: 2)" in caplog.text
    caplog.clear()
    build_model(tiny_config(f"model.weights={source_run}", "model.freeze=backbone"), num_classes=3)
    assert "model.trainable_backbone_layers: 0: model.freeze=backbone)" in caplog.text


def test_a_retinanet_from_scratch_at_the_default_lr_is_warned_once_with_the_stable_setting():
    from omegaconf import OmegaConf

    from losslab.modeling.start import RETINANET_SCRATCH_LR, start_advice

    def advice(*overrides: str) -> str | None:
        cfg = tiny_config(*overrides)
        validate(cfg)
        return start_advice(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optimizer))

    said = advice("model=retinanet")
    assert said.startswith("RetinaNet from random weights at optimizer.lr=0.0005 diverged on real photos")
    assert f"optimizer.lr={RETINANET_SCRATCH_LR:g} trains stably" in said and "model.weights=coco" in said
    assert "\n" not in said
    assert advice("model=retinanet", f"optimizer.lr={RETINANET_SCRATCH_LR}") is None  # the stable setting
    assert advice("model=retinanet", "optimizer=adam") is not None  # Adam's default lr is AdamW's
    assert advice("model=retinanet", "optimizer=sgd") is None  # another optimizer: the user's own choice
    assert advice("model=retinanet", "model.pretrained=true") is None  # not from random weights
    assert advice() is None  # Faster R-CNN, the default run

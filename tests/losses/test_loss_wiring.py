"""Every selectable loss in every architecture: finite on empty images, no cross-talk between
models, automatic class weights, presets and loss schedules."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY, tiny_config
from losslab import build_data, build_model, compose_config, run
from losslab.data.datasets import count_classes
from losslab.errors import LosslabError
from losslab.losses.build import build_losses
from losslab.losses.catalogue import ARCH_COMPONENTS, CATALOGUE, CONFIG_KEYS
from losslab.losses.components import class_weights
from losslab.losses.schedule import LossSchedule
from losslab.modeling.detectors import create_detector
from losslab.modeling.heads import get_losses, set_losses
from losslab.training.loop import named_losses

ARCHS = ["faster_rcnn", "mask_rcnn", "retinanet"]


def _models():
    """One small model per architecture, built once (weights never change in these tests)."""
    torch.manual_seed(0)
    return {arch: create_detector(arch, "resnet18_fpn", 3, build_losses(arch, {}, {}), min_size=48, max_size=48,
                                  box_batch_size_per_image=16).train() for arch in ARCHS}


MODELS = _models()


def _cases():
    for arch in ARCHS:
        for key, losses in CATALOGUE.items():
            if key in CONFIG_KEYS and CONFIG_KEYS[key] in ARCH_COMPONENTS[arch]:
                for name in losses:
                    yield arch, key, name


def _images(with_objects: bool):
    images = [torch.rand(3, 48, 48), torch.rand(3, 48, 48)]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 48, 48, dtype=torch.uint8)}
    mask = torch.zeros(1, 48, 48, dtype=torch.uint8)
    mask[0, 10:30, 8:40] = 1
    full = {"boxes": torch.tensor([[8.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([2]), "masks": mask}
    return images, [empty, full if with_objects else empty]


@pytest.mark.parametrize(("arch", "key", "name"), list(_cases()))
def test_every_loss_is_finite_with_finite_gradients_on_images_without_objects(arch, key, name):
    model = MODELS[arch]
    set_losses(model, build_losses(arch, {key: {"name": name}}, {}, class_counts=[3, 1, 2]))
    for with_objects in (False, True):
        model.zero_grad()
        losses = named_losses(model(*_images(with_objects)))
        assert torch.isfinite(losses["loss"]), (with_objects, losses)
        losses["loss"].backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_two_models_with_different_losses_do_not_interfere():
    torch.manual_seed(0)
    focal = build_model(tiny_config("loss=focal"))
    torch.manual_seed(0)
    plain = build_model(tiny_config())
    images, targets = _images(with_objects=True)
    torch.manual_seed(1)
    with_focal = named_losses(focal.train()(images, targets))["classification"]
    torch.manual_seed(1)
    with_ce = named_losses(plain.train()(images, targets))["classification"]
    torch.manual_seed(1)
    again = named_losses(focal(images, targets))["classification"]
    assert with_focal.item() == again.item()
    assert with_focal.item() < with_ce.item()  # the focal term is down-weighted (alpha, gamma)
    assert get_losses(plain).classification.func.__name__ == "cross_entropy"


def test_auto_weights_are_the_train_splits_balanced_inverse_class_frequencies():
    cfg = tiny_config("loss=weighted_ce")
    data = build_data(cfg)
    counts = count_classes(data.train, 3)
    expected = [0] * 3
    unaugmented = data.train.dataset
    for image_index in unaugmented.indices:
        for label in unaugmented.dataset[image_index][1]["labels"].tolist():
            expected[label - 1] += 1
    assert counts == expected and sum(counts) > 0
    assert all(counts)  # every class has train objects: each weighs n / (K n_k)
    weights = class_weights("cls", "auto", counts)
    assert weights[0] == 1.0  # background
    assert torch.allclose(weights[1:], sum(counts) / (3 * torch.tensor(counts, dtype=torch.float32)))
    model = build_model(cfg, class_counts=counts)
    assert torch.equal(get_losses(model).classification.keywords["weight"], weights)
    # The documented Python API counts them itself when not given.
    counted = build_model(compose_config([*TINY, "loss/cls=weighted_ce"]))
    assert torch.equal(get_losses(counted).classification.keywords["weight"], weights)


def test_class_counts_come_from_the_annotations_without_decoding_an_image(tmp_path, monkeypatch):
    from PIL import Image

    from losslab.data import images as image_files
    from losslab.data.datasets import build_datasets

    folder = tmp_path / "images"
    folder.mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 7, "name": "b"}]}
    for i in range(4):
        Image.new("RGB", (32, 32)).save(folder / f"{i}.png")
        coco["images"].append({"id": i, "file_name": f"{i}.png", "width": 32, "height": 32})
        for category in ([1, 7, 7] if i % 2 else [7]):
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i, "category_id": category,
                                        "bbox": [2, 2, 10, 10]})
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    data = build_datasets({"name": "coco", "images": str(folder), "annotations": str(tmp_path / "coco.json")},
                          {"name": "random", "train": 0.5, "val": 0.5, "test": 0.0, "seed": 0})
    train_ids = data.split_ids["train"]
    expected = [sum(i % 2 for i in train_ids), sum(2 if i % 2 else 1 for i in train_ids)]  # a: odd ids; b: all
    monkeypatch.setattr(image_files, "decode_pixels", lambda *args: pytest.fail("an image was decoded"))
    assert count_classes(data.train, 2) == expected and sum(expected) > 0


def test_auto_weights_keep_background_at_one_and_objects_at_one_on_average():
    # Issue 19: counts [1, 1000] gave [1, 1.998, 0.002]; balanced: n = 1001, K = 2 -> 1001/2 and 1001/2000.
    weights = class_weights("cls", "auto", [1, 1000])
    assert torch.allclose(weights, torch.tensor([1.0, 500.5, 0.5005]))
    assert torch.isclose((weights[1:] * torch.tensor([1.0, 1000.0])).sum() / 1001, torch.tensor(1.0))


def test_explicit_class_weights_need_one_per_class_and_none_negative():
    assert class_weights("cls", [1.0, 2.0, 3.0], [5, 5, 5]).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert class_weights("cls", [1.0, 0.0, 3.0], None, num_classes=3).tolist() == [1.0, 1.0, 0.0, 3.0]
    with pytest.raises(LosslabError, match=r"has 2 values \(\[1.0, 2.0\]\); expected one per object class of the data "
                                           r"\(3, background not counted\), or auto"):
        class_weights("cls", [1.0, 2.0], [5, 5, 5])
    with pytest.raises(LosslabError, match=r"has 2 values .* \(3, background not counted\)"):
        class_weights("cls", [1.0, 2.0], None, num_classes=3)  # explicit weights: no class counts are read
    with pytest.raises(LosslabError, match=r"loss.cls.weights=\[1.0, -0.001, 1.0\]: expected weights >= 0"):
        class_weights("cls", [1.0, -0.001, 1.0], None, num_classes=3)
    with pytest.raises(LosslabError, match=r"loss.cls.weights=2.0: expected auto or a list of numbers, one per object "
                                           r"class \(3\)"):
        class_weights("cls", 2.0, None, num_classes=3)


@pytest.mark.parametrize("weights", ["[1.0,2.0]", "[1.0,-0.001,1.0]"])
def test_bad_class_weights_stop_a_run_before_it_writes_its_split(tmp_path, weights):
    """Once, a wrong length ended in a RuntimeError at the first step and a negative weight trained."""
    with pytest.raises(LosslabError, match=r"loss.cls.weights.*(3, background not counted|expected weights >= 0)"):
        run(tiny_config("loss/cls=weighted_ce", f"loss.cls.weights={weights}", run_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "split.json").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("preset", "key", "name"),
    [("focal", "cls", "focal"), ("giou", "box", "giou"), ("ciou", "box", "ciou"), ("diou", "box", "diou"),
     ("dice", "mask", "dice"), ("jaccard", "mask", "jaccard"), ("bce_dice", "mask", "bce_dice"),
     ("ce_iou", "mask", "ce_iou"), ("weighted_ce", "cls", "weighted_ce")],
)
def test_presets_change_only_their_component(preset, key, name):
    cfg = tiny_config(f"loss={preset}")
    assert cfg.loss[key].name == name
    assert all(cfg.loss[other].name == "default" for other in CONFIG_KEYS if other != key)


def test_per_component_override_on_the_command_line():
    cfg = tiny_config("loss=focal", "loss/box=smooth_l1", "loss.box.beta=0.5")
    assert (cfg.loss.cls.name, cfg.loss.box.name, cfg.loss.box.beta) == ("focal", "smooth_l1", 0.5)
    losses = build_model(cfg).roi_heads.losses
    assert losses.box_regression.loss.keywords == {"beta": 0.5}


def test_schedule_phases_cycle_and_override_only_what_they_name():
    base = {"cls": {"name": "weighted_ce"}, "box": {"name": "default"}, "mask": {"name": "default"}}
    phases = [{"epochs": 2, "losses": {}, "lr_factor": 1.0},
              {"epochs": 1, "losses": {"cls": {"name": "ce"}, "mask": {"name": "jaccard"}}, "lr_factor": 0.1}]
    cycling = LossSchedule(base, phases, cycle=True)
    assert [cycling.phase_at(e).number for e in range(1, 8)] == [1, 1, 2, 1, 1, 2, 1]
    assert cycling.phase_at(3).choices == {"cls": {"name": "ce"}, "box": {"name": "default"},
                                           "mask": {"name": "jaccard"}}
    assert cycling.phase_at(3).lr_factor == 0.1
    assert [LossSchedule(base, phases).phase_at(e).number for e in range(1, 6)] == [1, 1, 2, 2, 2]
    assert LossSchedule(base, []).phase_at(1) is None
    with pytest.raises(LosslabError, match=r"phases\[0\].losses names \['classification'\]"):
        LossSchedule(base, [{"epochs": 1, "losses": {"classification": {"name": "ce"}}}])


def test_a_parameter_a_built_in_loss_does_not_have_is_an_error_naming_its_parameters():
    from losslab.errors import LosslabError

    # `+loss.cls.gama=1` composes (a `+` adds any key), so the loss is checked when it is built.
    with pytest.raises(LosslabError, match=r"loss.cls=focal has no parameter gama; its parameters are alpha, gamma"):
        build_losses("faster_rcnn", {"cls": {"name": "focal", "gama": 1.0}}, {})

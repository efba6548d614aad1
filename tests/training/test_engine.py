"""The epoch loop and the validation pass: averages, modes, determinism and non-finite losses."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from losslab import build_dataloaders, build_model, train_one_epoch, validation_loss
from losslab.losses.build import ComponentLosses
from losslab.modeling.runtime import loss_mode
from losslab.training.loop import NonFiniteLossError, RunningAverage


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _trained_model(arch="faster_rcnn"):
    """A model after one optimiser step, so BatchNorm running statistics are not at their init."""
    cfg = tiny_config(f"model={arch}")
    torch.manual_seed(0)
    model = build_model(cfg)
    loaders = build_dataloaders(cfg)
    images, targets = next(iter(loaders["train"]))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    sum(model.train()(list(images), list(targets)).values()).backward()
    optimizer.step()
    return model, loaders


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_validation_loss_leaves_every_parameter_and_buffer_bit_identical(arch):
    model, loaders = _trained_model(arch)
    before = _state(model)
    assert any("running_mean" in k for k in before)
    losses = validation_loss(model, loaders["val"])
    after = model.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, changed
    assert losses["loss"] > 0 and "classification" in losses


def test_validation_restores_the_modes_it_found():
    model, loaders = _trained_model()
    model.eval()
    model.roi_heads.train()  # a mixed state must come back exactly
    modes = {name: m.training for name, m in model.named_modules()}
    validation_loss(model, loaders["val"])
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_loss_mode_holds_batchnorm_and_dropout_in_eval():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1), torch.nn.Dropout(0.5))
    model.eval()
    with loss_mode(model):
        assert model.training and model[0].training
        assert not model[1].training and not model[2].training
    assert not any(m.training for m in model.modules())


def test_validation_loss_is_repeatable_and_leaves_the_callers_rng_alone():
    model, loaders = _trained_model()
    torch.manual_seed(123)
    first = validation_loss(model, loaders["val"], seed=5)
    after_validation = torch.rand(3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    assert torch.equal(after_validation, expected)
    assert validation_loss(model, loaders["val"], seed=5) == first


def test_epoch_average_weights_batches_by_their_number_of_images():
    # RetinaNet's loss has no random sampling, so a batch's loss is the same alone or in a loader.
    model, _ = _trained_model("retinanet")
    cfg = tiny_config("model=retinanet", "data.batch_size=2", "split.train=0.4", "split.val=0.3", "split.test=0.3")
    val = build_dataloaders(cfg)["val"]
    assert [len(images) for images, _ in val] == [2, 1]
    per_batch = [validation_loss(model, [batch]) for batch in val]
    whole = validation_loss(model, val)
    for name in whole:
        expected = (2 * per_batch[0][name] + 1 * per_batch[1][name]) / 3
        assert whole[name] == pytest.approx(expected, rel=1e-6)


def test_running_average_is_per_image():
    average = RunningAverage()
    average.add({"loss": 1.0}, batch_size=2)
    average.add({"loss": 4.0}, batch_size=1)
    assert average.means() == {"loss": 2.0}


def test_train_one_epoch_returns_averages_and_updates_weights():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    loaders = build_dataloaders(cfg)
    before = _state(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    averages = train_one_epoch(model, optimizer, loaders["train"], torch.device("cpu"), epoch=1, progress=False)
    assert set(averages) == {"loss", "classification", "box_regression", "objectness", "rpn_box_regression"}
    assert averages["loss"] == pytest.approx(sum(v for k, v in averages.items() if k != "loss"), rel=1e-6)
    assert not torch.equal(before["roi_heads.box_predictor.cls_score.weight"],
                           model.state_dict()["roi_heads.box_predictor.cls_score.weight"])


def test_non_finite_loss_stops_before_the_step_and_names_the_component():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    losses = model.roi_heads.losses
    def nan_box_loss(*args):
        return losses.box_regression(*args) * float("nan")

    broken = ComponentLosses(**{**losses.__dict__, "box_regression": nan_box_loss})
    model.roi_heads.losses = broken
    before = _state(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match="epoch 3, train step 0: box_regression") as error:
        train_one_epoch(model, optimizer, build_dataloaders(cfg)["train"], torch.device("cpu"), epoch=3, progress=False)
    assert error.value.epoch == 3 and error.value.step == 0
    after = model.state_dict()
    params = dict(model.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in params)


def test_detection_metrics_of_a_model_predicting_the_ground_truth_are_perfect():
    from losslab.evaluation.inference import detection_metrics

    _, loaders = _trained_model()
    targets = [t for _, batch in loaders["val"] for t in batch]

    class Oracle(torch.nn.Module):  # returns the ground truth as detections, in the order predict asks
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.seen = 0

        def forward(self, images):
            out = []
            for _ in images:
                t = targets[self.seen]
                self.seen += 1
                out.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))})
            return out

    metrics = detection_metrics(Oracle(), loaders["val"], ("circle", "square", "triangle"), score_threshold=0.5)
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["mAP50"] == pytest.approx(1.0)
    assert metrics["precision"] == metrics["recall"] == metrics["F1"] == 1.0

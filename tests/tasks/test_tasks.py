"""The task seam: each task implements the whole Task protocol, validation decides a plan once, and what both tasks
share (the loss builder's checks) holds for both."""

from __future__ import annotations

import inspect

import pytest
import torch

from conftest import tiny_config, tiny_segmentation_config
from losslab import compose_config
from losslab.config.plan import Plan
from losslab.config.validation import validate
from losslab.errors import LosslabError
from losslab.losses.components import class_weights, component_loss
from losslab.tasks import TASKS, task_named
from losslab.tasks.base import Task
from losslab.tasks.detection import DETECTION
from losslab.tasks.segmentation import SEGMENTATION


def _members(cls) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")} | set(getattr(cls, "__annotations__", {}))


@pytest.mark.parametrize("task", TASKS, ids=lambda task: task.name)
def test_every_task_implements_the_whole_protocol_with_its_signatures(task):
    assert _members(Task) <= _members(type(task)) | set(vars(task))
    for name, method in vars(Task).items():
        if inspect.isfunction(method) and not name.startswith("_"):
            ours = getattr(type(task), name)
            assert list(inspect.signature(ours).parameters) == list(inspect.signature(method).parameters), name


def test_a_task_is_chosen_by_name_and_an_unknown_one_is_refused():
    assert task_named(None) is DETECTION and task_named("segmentation") is SEGMENTATION
    with pytest.raises(LosslabError, match="task=panoptic: expected one of detection, segmentation"):
        task_named("panoptic")


def test_validation_decides_the_plan_once():
    plan = validate(tiny_config("trainer.monitor=val/mAP", "trainer.mode=max", "eval.every=3",
                                "trainer.checkpoints=true", "trainer.on_nonfinite=skip",
                                "trainer.max_skipped_batches=4"))
    assert isinstance(plan, Plan) and plan.task is DETECTION
    assert plan.eval_every == 1  # the monitor is evaluated, so every epoch is
    assert (plan.checkpoints, plan.monitor, plan.mode) == ("both", "val/mAP", "max")
    assert plan.max_skipped_batches == 4 and plan.early_stopping is None
    assert plan.loss_choices["cls"]["name"] == "default" and plan.sections["model"]["arch"] == "faster_rcnn"
    segmentation = validate(tiny_segmentation_config("eval.every=3"))
    assert segmentation.task is SEGMENTATION and segmentation.eval_every == 3
    assert segmentation.max_skipped_batches is None  # trainer.on_nonfinite=stop
    assert list(segmentation.loss_choices) == ["pixel"]


@pytest.mark.parametrize(("make", "key"), [(tiny_config, "cls"), (tiny_segmentation_config, "pixel")])
def test_a_loss_phase_with_an_unknown_parameter_is_refused_before_anything_runs(make, key):
    phase = f"+loss.schedule.phases=[{{epochs: 1, losses: {{{key}: {{name: focal, gama: 2.0}}}}}}]"
    with pytest.raises(LosslabError, match=rf"loss.schedule.phases\[0\].losses.{key}: loss.{key}=focal has no "
                                           r"parameter gama; its parameters are alpha, gamma"):
        validate(make(phase))


def test_the_loss_builder_checks_both_tasks_alike():
    with pytest.raises(LosslabError, match="loss.pixel=dice has no parameter smoth"):
        component_loss("pixel", {"name": "dice", "smoth": 1.0}, "segmenter")
    with pytest.raises(LosslabError, match="loss.mask.smooth=0.0 \\(dice\\): smooth must be > 0"):
        component_loss("mask", {"name": "dice", "smooth": 0.0}, "rcnn")
    component_loss("pixel", {"name": "dice", "smooth": 0.0}, "segmenter")  # smp's Dice takes 0: its own eps
    # weighted_ce's explicit weights: one per class and none negative, for objects and for pixels
    assert class_weights("pixel", [1.0, 2.0, 3.0], None, 3).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(LosslabError, match=r"loss.pixel.weights=\[1.0, -1.0, 1.0\]: expected weights >= 0"):
        class_weights("pixel", [1.0, -1.0, 1.0], None, 3)
    with pytest.raises(LosslabError, match=r"loss.pixel.weights has 2 values .* one per pixel class of the data "
                                           r"\(3, background first\)"):
        class_weights("pixel", [1.0, 2.0], [5, 5, 5])
    assert torch.equal(class_weights("cls", [2.0], [7]), torch.tensor([1.0, 2.0]))  # the background keeps 1


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=deeplabv3"], "model=deeplabv3 is a semantic segmentation model; add task=segmentation"),
    (["task=segmentation", "model=retinanet"], "model=retinanet is a detector; task=segmentation trains "
                                               "deeplabv3 | fcn | lraspp"),
    (["task=segmentation", "data=voc", "data.root=x"], "data=voc holds boxes only"),
    (["data=voc_seg", "data.root=x"], "data=voc_seg holds semantic masks, not objects; add task=segmentation"),
])
def test_a_model_or_dataset_of_the_other_task_says_what_to_change(overrides, message):
    with pytest.raises(LosslabError, match=message):
        validate(compose_config(overrides))

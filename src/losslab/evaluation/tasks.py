"""What differs between the tasks (`task=detection` | `task=segmentation`), and nothing else: how a config's
plain sections become datasets, losses and a model, and how a model is scored. The trainer (loop, curves, sweeps,
checkpoints, resume, DDP, loggers) and the inference commands are the same for both and pick the pieces here by
the run's `task`.

Detection: torchvision detectors, object labels 1..K (background implicit), COCO mAP. Segmentation: torchvision
segmentation networks, pixel classes 0..K-1 (background is class 0, named in `classes`), mIoU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from losslab.data.datasets import build_datasets, count_classes
from losslab.data.segmentation import build_segmentation_datasets, count_pixels
from losslab.evaluation.inference import detection_metrics
from losslab.evaluation.segmentation_metrics import segmentation_metrics
from losslab.losses import build as detection_losses
from losslab.losses import segmentation_build as segmentation_losses
from losslab.modeling import segmentation_weights, start
from losslab.modeling.detectors import build_detector
from losslab.modeling.segmenters import build_segmenter, has_aux

DETECTION, SEGMENTATION = "detection", "segmentation"


@dataclass(frozen=True)
class Task:
    """The task-specific pieces, each taking plain values (config sections as dicts)."""

    name: str
    counted: str  # what class counts count: "objects" | "pixels"
    # (data, split, augment sections) -> an object with train/val/test splits, classes, split_ids, category_ids
    build_data: Callable
    # a plain `loss` section -> ({config key: choice}, {component: weight})
    loss_choices: Callable[[dict], tuple[dict, dict]]
    # the choices of every loss phase -> whether class_counts are needed (weighted_ce with automatic weights)
    needs_class_counts: Callable[[list[dict]], bool]
    # data -> the train split's count of each class (objects of classes 1..K, or pixels of classes 0..K-1)
    class_counts: Callable
    # (model section, choices, weights, class counts or None, number of classes) -> the losses the model calls
    build_losses: Callable
    # (model section, every phase's choices, number of classes, device) -> the user losses (`custom`) among them,
    # each imported and called on a synthetic batch
    check_user_losses: Callable
    # model section -> the losses of val/ref_loss (comparable across runs)
    reference_losses: Callable[[dict], object]
    # (choices, weights, model section) -> whether training's losses are the reference ones (no second val pass)
    trains_reference: Callable[[dict, dict, dict], bool]
    # (model section, losses, number of classes) -> the model, with random or ImageNet-backbone weights
    build_model: Callable[[dict, object, int], nn.Module]
    # model section -> the weights file model.weights names, found (or fetched) before the run writes anything
    locate_start_weights: Callable[[dict], object]
    # (model, that file, model section) -> load what model.weights names for a new run; what was loaded, or None
    load_start_weights: Callable[[nn.Module, object, dict], dict | None]
    # (model, loader, classes, eval section, device, progress, precision) -> {metric name: value}
    metrics: Callable


def task_of(cfg) -> str:
    """The task of a config (a DictConfig or a plain dict); runs from before tasks existed are detection runs."""
    return cfg.get("task") or DETECTION


def _detection_default(choices: dict, weights: dict, model: dict) -> bool:
    return all(c.get("name") == "default" for c in choices.values()) and all(w == 1.0 for w in weights.values())


def _segmentation_default(choices: dict, weights: dict, model: dict) -> bool:
    # The reference scores the main output with plain cross-entropy: the default loss at weight 1 computes the same
    # value only when there is no auxiliary head to add.
    return not has_aux(model) and choices["pixel"].get("name") == "default" and weights.get("pixel", 1.0) == 1.0


def _detection_metrics(model, loader, classes, eval_options: dict, device, progress: bool, precision: str) -> dict:
    return detection_metrics(model, loader, classes, eval_options["score_threshold"], device, progress, precision,
                             eval_options["backend"])


def _segmentation_metrics(model, loader, classes, eval_options: dict, device, progress: bool, precision: str) -> dict:
    return segmentation_metrics(model, loader, classes, device, progress, precision)


TASKS = {
    DETECTION: Task(
        name=DETECTION,
        counted="objects",
        build_data=build_datasets,
        loss_choices=detection_losses.loss_choices,
        needs_class_counts=detection_losses.needs_class_counts,
        class_counts=lambda data: count_classes(data.train, len(data.classes)),
        build_losses=lambda model, choices, weights, counts, classes: detection_losses.build_losses(
            model["arch"], choices, weights, counts, classes),
        check_user_losses=lambda model, every_choice, classes, device: detection_losses.check_user_losses(
            model["arch"], every_choice, classes, device),
        reference_losses=lambda model: detection_losses.build_losses(model["arch"], {}, {}),
        trains_reference=_detection_default,
        build_model=build_detector,
        locate_start_weights=start.locate_start_weights,
        load_start_weights=start.load_start_weights,
        metrics=_detection_metrics,
    ),
    SEGMENTATION: Task(
        name=SEGMENTATION,
        counted="pixels",
        build_data=build_segmentation_datasets,
        loss_choices=segmentation_losses.segmentation_loss_choices,
        needs_class_counts=segmentation_losses.needs_pixel_counts,
        class_counts=lambda data: count_pixels(data.train, len(data.classes)),
        build_losses=lambda model, choices, weights, counts, classes: segmentation_losses.build_segmentation_losses(
            choices, weights, has_aux(model), counts),
        check_user_losses=lambda model, every_choice, classes, device: segmentation_losses.check_user_losses(
            every_choice, classes, device),
        reference_losses=lambda model: segmentation_losses.reference_losses(),
        trains_reference=_segmentation_default,
        build_model=build_segmenter,
        locate_start_weights=lambda model: None,  # found when loaded: its own cache rules
        load_start_weights=lambda segmenter, file, model: segmentation_weights.load_start_weights(segmenter.network,
                                                                                                  model),
        metrics=_segmentation_metrics,
    ),
}


def task(cfg) -> Task:
    """The Task of a config (DictConfig or plain dict)."""
    return TASKS[task_of(cfg)]


"""Semantic segmentation metrics from one confusion matrix over a split's pixels (rows: true class, columns:
predicted class; ignored pixels count nowhere), the convention of Pascal VOC and of mmsegmentation:

- IoU of class c = TP / (TP + FP + FN), over the whole split's pixels (not averaged per image);
- mIoU = the mean IoU over the classes present in the targets or the predictions (a class that is in neither has
  no IoU and is left out of the mean); background is a class like any other;
- Dice of class c = 2 TP / (2 TP + FP + FN), mDice their mean (the same classes);
- pixel accuracy = correctly classified pixels / counted pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from losslab.distributed import all_reduce_sum
from losslab.losses.catalogue import IGNORE_INDEX
from losslab.modeling.runtime import autocast, eval_mode, to_device


def confusion_matrix(predicted: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Pixel counts [num_classes, num_classes] of (true class, predicted class) over the pixels whose target is not
    IGNORE_INDEX; int64, on the inputs' device."""
    counted = target != IGNORE_INDEX
    pairs = target[counted].long() * num_classes + predicted[counted].long()
    return torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(matrix: Tensor, classes: Sequence[str]) -> dict[str, float]:
    """mIoU, mDice, pixel_accuracy and IoU/<class> of a confusion matrix (see the module's docstring); a class in
    neither targets nor predictions has IoU NaN."""
    matrix = matrix.double().cpu()
    true_positive = matrix.diag()
    false_positive = matrix.sum(dim=0) - true_positive
    false_negative = matrix.sum(dim=1) - true_positive
    union = true_positive + false_positive + false_negative
    present = union > 0
    iou = torch.where(present, true_positive / union.clamp(min=1), math.nan)
    dice = torch.where(present, 2 * true_positive / (union + true_positive).clamp(min=1), math.nan)
    counted = float(matrix.sum())
    return {
        "mIoU": float(iou[present].mean()) if present.any() else math.nan,
        "mDice": float(dice[present].mean()) if present.any() else math.nan,
        "pixel_accuracy": float(true_positive.sum()) / counted if counted else math.nan,
        **{f"IoU/{name}": float(value) for name, value in zip(classes, iou, strict=True)},
    }


@torch.inference_mode()
def split_confusion_matrix(model: nn.Module, loader: Iterable, num_classes: int, device: torch.device | None = None,
                           progress: bool = False, precision: str = "32") -> Tensor:
    """The confusion matrix of `model`'s eval-mode predictions over every image of `loader` (over every process's
    share when data-parallel), on the CPU; one image per forward (see predict_each). Restores every module's mode;
    runs on a forked RNG, as detection's predict does, so evaluating leaves the training's random stream where it
    was."""
    device = device or next(model.parameters()).device
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with eval_mode(model), torch.random.fork_rng(devices=cuda_devices):
        for images, targets in tqdm(loader, desc="evaluation", leave=False, disable=not progress,
                                    dynamic_ncols=True):
            images, targets = to_device(images, targets, device)
            with autocast(device, precision):
                outputs = predict_each(model, images)
            for output, target in zip(outputs, targets, strict=True):
                matrix += confusion_matrix(output["mask"], target["mask"], num_classes)
    summed = all_reduce_sum(matrix.flatten().double().tolist(), device)
    return torch.tensor(summed, dtype=torch.float64).round().long().reshape(num_classes, num_classes)


def predict_each(model: nn.Module, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
    """The eval-mode `model([image])` of every image on its own. A batch pads its images to the largest one, and the
    network's convolutions see that padding near every border: a portrait photo batched with a landscape one would
    get other classes along its edges than alone, so the metrics would depend on the loader's batch size."""
    return [output for image in images for output in model([image])]


def segmentation_metrics(model: nn.Module, loader: Iterable, classes: Sequence[str],
                         device: torch.device | None = None, progress: bool = False,
                         precision: str = "32") -> dict[str, float]:
    """mIoU, mDice, pixel accuracy and per-class IoU of `model` on `loader`'s images (per-epoch evaluation)."""
    return scores(split_confusion_matrix(model, loader, len(classes), device, progress, precision), classes)

"""Prediction over a loader in eval mode, and the detection metrics of a model on a split (shared by the per-epoch
evaluation and `losslab evaluate`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.transform import resize_boxes
from tqdm.auto import tqdm

from losslab.distributed import gather
from losslab.evaluation.metrics import score_detections
from losslab.modeling.runtime import autocast, eval_mode, to_device


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, device: torch.device | None = None,
            progress: bool = False, precision: str = "32") -> tuple[list[dict], list[dict], list[tuple[int, int]]]:
    """Eval-mode detections for every image of `loader`, its targets and (height, width), on the CPU.

    Each image is its own forward (see detect_each), so the detections do not depend on the loader's batch size.
    Restores every module's previous mode afterwards. Iterating a DataLoader draws a seed from the
    global RNG, so this runs on a forked RNG: evaluating leaves the training's random stream
    (shuffling, augmentation) exactly where it was.
    """
    device = device or next(model.parameters()).device
    predictions, targets, sizes = [], [], []
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with eval_mode(model), torch.random.fork_rng(devices=cuda_devices):
        for images, batch_targets in tqdm(loader, desc="evaluation", leave=False, disable=not progress,
                                          dynamic_ncols=True):
            images, _ = to_device(images, [], device)
            with autocast(device, precision):
                outputs = detect_each(model, images)
            predictions += [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in output.items()}
                            for output in outputs]
            targets.extend(batch_targets)
            sizes.extend(tuple(image.shape[-2:]) for image in images)
    return predictions, targets, sizes


def detect_each(model: nn.Module, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
    """detect() of every image on its own, as torchvision's references evaluate (one image per forward).

    Why not the whole batch? torchvision pads a batch to its largest image: a portrait photo padded to a landscape
    one's size gives other features near its border, other proposals and other detections. Alone, an image is padded
    only to its own size rounded up to the backbone's stride, so its detections are the same in any batch.
    """
    return [output for image in images for output in detect(model, [image])]


def detect(model: nn.Module, images: list[Tensor]) -> list[dict[str, Tensor]]:
    """What the eval-mode `model(images)` returns, but for Mask R-CNN the masks stay each detection's probability
    map of its box: "mask_crops" [N, 28, 28] instead of torchvision's full-size "masks" [N, 1, H, W]
    (losslab.evaluation.masks places them in the image, as torchvision would, where they are needed).

    The steps are torchvision's GeneralizedRCNN.forward in eval mode, without pasting the masks.
    """
    if not getattr(getattr(model, "roi_heads", None), "has_mask", lambda: False)():
        return model(images)
    original_sizes = [tuple(image.shape[-2:]) for image in images]
    batch, _ = model.transform(images)
    features = model.backbone(batch.tensors)
    proposals, _ = model.rpn(batch, features)
    detections, _ = model.roi_heads(features, proposals, batch.image_sizes)
    for detection, resized, original in zip(detections, batch.image_sizes, original_sizes, strict=True):
        detection["boxes"] = resize_boxes(detection["boxes"], resized, original)
        detection["mask_crops"] = detection.pop("masks")[:, 0]
    return detections


def detection_metrics(model: nn.Module, loader: Iterable, classes: Sequence[str], score_threshold: float = 0.5,
                      device: torch.device | None = None, progress: bool = False,
                      precision: str = "32", backend: str = "pycocotools") -> dict[str, float]:
    """COCO box mAP, mAP50, mAP75, mAR@100 and AP per class (pycocotools), the same for masks
    (`mask_` prefix) when the model predicts them, and precision, recall and F1 at
    `score_threshold` and IoU 0.5. Data-parallel, each process predicts its share and every
    process scores all of them."""
    predictions, targets, sizes = predict(model, loader, device, progress, precision)
    predictions, targets, sizes = gather(predictions), gather(targets), gather(sizes)
    return score_detections(predictions, targets, sizes, classes, score_threshold, backend=backend)[0]



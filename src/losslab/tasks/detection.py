"""task=detection: torchvision detectors (Faster R-CNN, Mask R-CNN, RetinaNet, FCOS, SSD, SSDlite), object labels
1..K with the background implicit, COCO mAP; predictions drawn as boxes (and masks) and written as COCO results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.io import write_png
from torchvision.transforms.v2.functional import to_dtype

from losslab.data.datasets import DetectionData, build_datasets, count_classes
from losslab.errors import LosslabError
from losslab.evaluation.export_check import SCORE_TOLERANCE
from losslab.evaluation.exporting import Exportable, detection_export
from losslab.evaluation.inference import detect_each, detection_metrics, predict
from losslab.evaluation.masks import mask_regions
from losslab.evaluation.metrics import COCO_SUMMARY, coco_results, confusion_matrix, score_detections
from losslab.losses.build import build_losses, loss_choices
from losslab.losses.catalogue import ARCH_COMPONENTS, CONFIG_KEYS, family
from losslab.losses.components import check_user_losses
from losslab.modeling import start
from losslab.modeling.detectors import ARCH_BACKBONES, ARCHS, LONE_IMAGE_FAILS, build_detector
from losslab.modeling.heads import scores_at_least
from losslab.modeling.single_stage import SSD300_SIZE
from losslab.reporting.drawing import draw_objects
from losslab.reporting.evaluation_figures import plot_confusion_matrix, plot_pr_curves
from losslab.reporting.history import write_json

METRICS = (*COCO_SUMMARY, "precision", "recall", "F1")
MASK_METRICS = COCO_SUMMARY  # Mask R-CNN's masks scored as COCO scores them: val/mask_mAP, ...
# data= options that hold no objects, with what to do instead
FOREIGN_DATA = {name: f"data={name} holds semantic masks, not objects; add task=segmentation"
                for name in ("folder", "voc_seg")}


class Detection:
    name = "detection"
    archs = ARCHS
    model_noun = "a detector"
    counted = "objects"
    weights_key = "cls"
    yardstick = "val/mAP"  # the evaluated metric trainer.monitor=auto selects by
    predicted = "detections"

    def config_problems(self, cfg: dict) -> list[str]:
        model = cfg["model"]
        problems = []
        if cfg["data"]["name"] in FOREIGN_DATA:
            problems.append(FOREIGN_DATA[cfg["data"]["name"]])
        if model["arch"] not in ARCHS:
            return problems  # the task checks name it
        backbones = ARCH_BACKBONES[model["arch"]]
        if model["backbone"] not in backbones:
            problems.append(f"model.backbone={model['backbone']}: expected {' or '.join(backbones)} for "
                            f"model={model['arch']}")
            return problems
        problems += start.start_problems(model) + square_input_problems(model)
        return problems

    def monitor_choices(self, model: dict, evaluates: bool = False) -> list[str]:
        names = ["loss", *ARCH_COMPONENTS[model["arch"]]]
        columns = ["lr"] + [f"{prefix}{name}" for prefix in ("train/", "val/", "val/ref_") for name in names]
        return columns + (self.evaluated_metrics(model) if evaluates else [])

    def evaluated_metrics(self, model: dict) -> list[str]:
        masks = [f"val/mask_{metric}" for metric in MASK_METRICS] if "mask" in ARCH_COMPONENTS[model["arch"]] else []
        return [f"val/{metric}" for metric in METRICS] + masks

    def build_data(self, data: dict, split: dict, augment: dict | None = None) -> DetectionData:
        return build_datasets(data, split, augment)

    def check_data(self, model: dict, data_name: str, data: DetectionData) -> None:
        if "mask" in ARCH_COMPONENTS[model["arch"]] and not data.has_masks:
            raise LosslabError(f"model={model['arch']} learns instance masks, but data={data_name} has none (VOC has "
                               "boxes only; COCO needs 'segmentation' polygons or RLE). Use model=faster_rcnn or "
                               "model=retinanet, or data with masks.")

    def drops_lone_image(self, model: dict) -> bool:
        return model["arch"] in LONE_IMAGE_FAILS

    def class_counts(self, data: DetectionData) -> list[int]:
        return count_classes(data.train, len(data.classes))

    def loss_choices(self, loss: dict) -> tuple[dict[str, dict], dict[str, float]]:
        return loss_choices(loss)

    def build_losses(self, model: dict, choices: dict, weights: dict, counts: list[int] | None, num_classes: int):
        return build_losses(model["arch"], choices, weights, counts, num_classes)

    def check_user_losses(self, model: dict, every_choice: list[dict], num_classes: int, device: torch.device) -> list:
        keys = tuple(key for key, component in CONFIG_KEYS.items() if component in ARCH_COMPONENTS[model["arch"]])
        return check_user_losses(keys, family(model["arch"]), every_choice, num_classes, device)

    def reference_losses(self, model: dict):
        return build_losses(model["arch"], {}, {})

    def reference_name(self, model: dict) -> str:
        return f"model={model['arch']}'s loss=default"  # each detector's own losses

    def trains_reference(self, choices: dict, weights: dict, model: dict) -> bool:
        return all(c.get("name") == "default" for c in choices.values()) and all(w == 1.0 for w in weights.values())

    def build_model(self, model: dict, losses, num_classes: int) -> nn.Module:
        return build_detector(model, losses, num_classes)

    def locate_start_weights(self, model: dict) -> Path | None:
        return start.locate_start_weights(model)

    def load_start_weights(self, built: nn.Module, file: Path | None, model: dict) -> dict | None:
        return start.load_start_weights(built, file, model)

    def start_advice(self, model: dict, optimizer: dict) -> str | None:
        return start.start_advice(model, optimizer)

    def prepare_for_inference(self, built: nn.Module, model: dict, device: torch.device) -> None:
        settle_roi_pool_scales(built, model["min_size"], device)

    def metrics(self, built: nn.Module, loader, classes: Sequence[str], eval_options: dict, device: torch.device,
                progress: bool, precision: str) -> dict[str, float]:
        return detection_metrics(built, loader, classes, eval_options["score_threshold"], device, progress,
                                 precision, eval_options["backend"])

    def evaluate(self, saved, data: DetectionData, loader, header: dict, out: Path, threshold: float,
                 progress: bool) -> dict:
        """metrics.json, predictions.json (COCO results), ground_truth.json (COCO instances), pr_curve.png and
        confusion_matrix.png."""
        predictions, targets, sizes = predict(saved.model, loader, saved.device, progress)
        metrics, ground_truth, results = score_detections(predictions, targets, sizes, data.classes, threshold,
                                                          with_pr=True, category_ids=data.category_ids,
                                                          backend=saved.cfg["eval"]["backend"])
        curves = metrics.pop("pr")
        matrix = confusion_matrix(predictions, targets, len(data.classes), threshold)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", {**header, "score_threshold": threshold, **metrics,
                                          "confusion_matrix": matrix.tolist()})
        (out / "predictions.json").write_text(json.dumps(with_file_names(results, ground_truth)))
        (out / "ground_truth.json").write_text(json.dumps(ground_truth))
        plot_pr_curves(curves, out / "pr_curve.png")
        plot_confusion_matrix(matrix, ["background", *data.classes], out / "confusion_matrix.png")
        return metrics

    def predict(self, built: nn.Module, images: list[Tensor], threshold: float) -> list[dict[str, Tensor]]:
        with scores_at_least(built, threshold):
            outputs = detect_each(built, images)
        return [above_threshold({k: v.cpu() for k, v in output.items()}, threshold) for output in outputs]

    def write_prediction(self, image: Tensor, output: dict[str, Tensor], saved, index: int, path: Path,
                         drawn: Path) -> list[dict]:
        """The detections drawn into `drawn`; COCO results {image_id, file_name, category_id, bbox, score} and,
        for Mask R-CNN, an RLE `segmentation`."""
        write_png(draw_detections(image, output, saved.classes), str(drawn))
        return [{**result, "file_name": str(path)}
                for result in coco_results([output], [index], with_masks="mask_crops" in output,
                                           category_ids=saved.category_ids, image_sizes=[tuple(image.shape[-2:])])]

    def exportable(self, saved, box_tolerance: float, score_tolerance: float | None) -> Exportable:
        """The detector with its exact resize and stock heads, and its check: one-to-one IoU matching of what a
        user keeps (score >= eval.score_threshold), boxes within `box_tolerance` px, scores `score_tolerance`."""
        tolerance = SCORE_TOLERANCE if score_tolerance is None else score_tolerance
        return detection_export(saved.model, saved.classes, float(saved.cfg["eval"]["score_threshold"]),
                                box_tolerance, tolerance)

    def augmented_train_split(self, data: dict, split: dict, augment: dict) -> tuple[Any, dict | None, list[str]]:
        built = build_datasets(data, split)  # not augmented: show-augment applies `augment` itself
        return built.train, augment, built.classes


DETECTION = Detection()


def square_input_problems(model: dict) -> list[str]:
    """The SSDs resize every image to a square: model.min_size is its side (SSD300: 300 only), max_size the same."""
    arch, side, longest = model["arch"], model["min_size"], model["max_size"]
    if arch == "ssd" and (side, longest) != (SSD300_SIZE, SSD300_SIZE):
        return [f"model.min_size={side} model.max_size={longest}: SSD300 takes 300 x 300 images only (its default "
                "boxes and VGG16's extra layers are made for 300); set both to 300, or use model=ssdlite, whose side "
                "model.min_size sets"]
    if arch == "ssdlite" and side != longest:
        return [f"model.max_size={longest}: SSDlite resizes every image to a model.min_size x model.min_size "
                f"square; set model.max_size={side} too"]
    if arch == "ssdlite" and side < 64:
        return [f"model.min_size={side}: SSDlite's six feature maps need a side of at least 64 (torchvision: 320)"]
    return []


def with_file_names(results: list[dict], ground_truth: dict) -> list[dict]:
    """The COCO results, each with its image's file_name beside the integer image_id (where the image has one)."""
    names = {image["id"]: image["file_name"] for image in ground_truth["images"] if "file_name" in image}
    return [result | ({"file_name": names[result["image_id"]]} if result["image_id"] in names else {})
            for result in results]


def above_threshold(prediction: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
    """The detections with score >= `threshold`."""
    keep = prediction["scores"] >= threshold
    return {k: v[keep] for k, v in prediction.items()}


def draw_detections(image: Tensor, prediction: dict[str, Tensor], classes: Sequence[str]) -> Tensor:
    """The uint8 [3, H, W] image with translucent edged masks (if any), boxes and "class score" labels drawn."""
    labels = prediction["labels"].tolist()
    names = [f"{classes[label - 1]} {score:.2f}" for label, score in zip(labels, prediction["scores"].tolist(),
                                                                            strict=True)]
    height, width = image.shape[-2:]
    masks = mask_regions(prediction["mask_crops"], prediction["boxes"], height, width) \
        if "mask_crops" in prediction else None  # each in its box: never a full-size stack of masks
    return draw_objects(to_dtype(image.cpu(), torch.uint8, scale=True), prediction["boxes"], labels, names, masks)


def settle_roi_pool_scales(model: nn.Module, size: int, device: torch.device) -> None:
    """Fix the R-CNN RoI pools' feature-map scales on a blank `size` square image.

    torchvision's MultiScaleRoIAlign infers those scales from the first images it sees and keeps them. A first image
    much wider than tall (resized height far below the padded height) gives wrong ones, and every later prediction
    would depend on which image came first; an exported model would carry them too. Only the backbone runs here.
    """
    if not hasattr(model, "roi_heads"):
        return  # RetinaNet pools nothing
    with torch.inference_mode():
        batch, _ = model.transform([torch.zeros(3, size, size, device=device)])
        features = model.backbone(batch.tensors)
        no_boxes = [torch.zeros(0, 4, device=device)]
        for pool in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
            if pool is not None:
                pool(features, no_boxes, batch.image_sizes)

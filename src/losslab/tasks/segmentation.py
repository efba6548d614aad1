"""task=segmentation: torchvision's segmentation networks (LR-ASPP, DeepLabV3, FCN) and segmentation_models_pytorch's
(U-Net to Segformer), pixel classes 0..K-1 (the background is class 0, named in `classes`), mIoU; predictions drawn as
class masks and written as index PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.io import write_png
from torchvision.transforms.v2.functional import to_dtype

from losslab.data.augment_options import enabled
from losslab.data.segmentation import SegmentationData, build_segmentation_datasets, count_pixels
from losslab.evaluation.export_check import PROBABILITY_TOLERANCE
from losslab.evaluation.exporting import Exportable, segmentation_export
from losslab.evaluation.segmentation_metrics import (
    predict_each,
    scores,
    segmentation_metrics,
    split_confusion_matrix,
)
from losslab.losses.components import check_user_losses
from losslab.losses.segmentation_build import (
    FAMILY,
    KEY,
    build_segmentation_losses,
    reference_losses,
    segmentation_loss_choices,
)
from losslab.modeling import segmentation_weights, smp_weights
from losslab.modeling.segmenters import BUILDERS, SEGMENTATION_ARCHS, build_segmenter, has_aux
from losslab.modeling.smp_networks import ARCHS as SMP_ARCHS
from losslab.modeling.smp_networks import smp_problems
from losslab.reporting.evaluation_figures import plot_confusion_matrix
from losslab.reporting.history import write_json
from losslab.reporting.segmentation_figures import draw_class_mask, plot_class_iou, save_index_png

METRICS = ("mIoU", "mDice", "pixel_accuracy")
# data= options that hold no class masks, with what to do instead
FOREIGN_DATA = {"voc": "data=voc holds boxes only; task=segmentation reads Pascal VOC's segmentation set with "
                       "data=voc_seg"}


class Segmentation:
    name = "segmentation"
    archs = SEGMENTATION_ARCHS
    model_noun = "a semantic segmentation model"
    counted = "pixels"
    weights_key = KEY
    yardstick = "val/mIoU"  # the evaluated metric trainer.monitor=auto selects by
    predicted = "masks"

    def config_problems(self, cfg: dict) -> list[str]:
        """The data, model, start weights and augmentation of a task=segmentation config."""
        model, augment = cfg["model"], cfg["augment"]
        problems = [FOREIGN_DATA[cfg["data"]["name"]]] if cfg["data"]["name"] in FOREIGN_DATA else []
        if enabled(augment, ("copy_paste",)):
            problems.append(f"augment.copy_paste.p={augment['copy_paste']['p']}: copy_paste pastes object instances "
                            "between images, which task=segmentation does not have; set it to 0 (every built-in "
                            "preset does; the mosaic works with class masks)")
        if model["arch"] in SMP_ARCHS:
            return problems + smp_problems(model) + smp_weights.weights_problems(model)
        if model["arch"] not in BUILDERS:
            return problems  # the task checks name it
        if model["backbone"] not in BUILDERS[model["arch"]]:
            problems.append(f"model.backbone={model['backbone']}: model={model['arch']} has the backbones "
                            f"{', '.join(BUILDERS[model['arch']])}")
        if model["weights"] not in (None, segmentation_weights.COCO_VOC):
            problems.append(f"model.weights={model['weights']}: expected null (random) or "
                            f"{segmentation_weights.COCO_VOC} (torchvision's weights trained on COCO with the Pascal "
                            "VOC classes)")
        if model["weights"] is not None and model["pretrained"]:
            problems.append(f"model.pretrained=true downloads ImageNet backbone weights that model.weights="
                            f"{model['weights']} replaces; set model.pretrained=false")
        return problems

    def monitor_choices(self, model: dict, evaluates: bool = False) -> list[str]:
        components = ["loss", "pixel", *(["aux"] if has_aux(model) else [])]
        columns = ["lr", *(f"{split}/{name}" for split in ("train", "val") for name in components),
                   "val/ref_loss", "val/ref_pixel"]
        return columns + (self.evaluated_metrics(model) if evaluates else [])

    def evaluated_metrics(self, model: dict) -> list[str]:
        return [f"val/{metric}" for metric in METRICS]

    def build_data(self, data: dict, split: dict, augment: dict | None = None) -> SegmentationData:
        return build_segmentation_datasets(data, split, augment)

    def check_data(self, model: dict, data_name: str, data: SegmentationData) -> None:
        return None  # every segmentation dataset gives every model its class masks

    def drops_lone_image(self, model: dict) -> bool:
        return True  # DeepLabV3's image pooling, PSPNet's pyramid, ...: BatchNorm over pooled 1x1 features

    def class_counts(self, data: SegmentationData) -> list[int]:
        return count_pixels(data.train, len(data.classes))

    def loss_choices(self, loss: dict) -> tuple[dict[str, dict], dict[str, float]]:
        return segmentation_loss_choices(loss)

    def build_losses(self, model: dict, choices: dict, weights: dict, counts: list[int] | None, num_classes: int):
        return build_segmentation_losses(choices, weights, has_aux(model), counts, num_classes)

    def check_user_losses(self, model: dict, every_choice: list[dict], num_classes: int, device: torch.device) -> list:
        return check_user_losses((KEY,), FAMILY, every_choice, num_classes, device)

    def reference_losses(self, model: dict):
        return reference_losses()

    def reference_name(self, model: dict) -> str:
        return "cross-entropy per pixel of the main output"  # the same for every segmenter

    def trains_reference(self, choices: dict, weights: dict, model: dict) -> bool:
        # The reference scores the main output with plain cross-entropy: the default loss at weight 1 computes the
        # same value only when there is no auxiliary head to add.
        return not has_aux(model) and choices[KEY].get("name") == "default" and weights.get(KEY, 1.0) == 1.0

    def build_model(self, model: dict, losses, num_classes: int) -> nn.Module:
        return build_segmenter(model, losses, num_classes)

    def locate_start_weights(self, model: dict) -> Path | None:
        if model["arch"] in SMP_ARCHS and model["weights"] is not None:
            return smp_weights.weights_file(model)  # the local cache only: missing, the run stops before it starts
        return None  # torchvision's: found when loaded, torchvision's cache rules

    def load_start_weights(self, built: nn.Module, file: Path | None, model: dict) -> dict | None:
        if model["arch"] in SMP_ARCHS:
            return smp_weights.load_start_weights(built.network, file, model)
        return segmentation_weights.load_start_weights(built.network, model)

    def start_advice(self, model: dict, optimizer: dict) -> str | None:
        return None  # no segmenter start is known to diverge

    def prepare_for_inference(self, built: nn.Module, model: dict, device: torch.device) -> None:
        return None  # a segmenter keeps no state between images

    def metrics(self, built: nn.Module, loader, classes: Sequence[str], eval_options: dict, device: torch.device,
                progress: bool, precision: str) -> dict[str, float]:
        return segmentation_metrics(built, loader, classes, device, progress, precision)

    def evaluate(self, saved, data: SegmentationData, loader, header: dict, out: Path, threshold: float,
                 progress: bool) -> dict:
        """The confusion matrix of the split's pixels, its scores, metrics.json, class_iou.png and
        confusion_matrix.png (rows normalised: the share of each true class's pixels predicted as each class)."""
        matrix = split_confusion_matrix(saved.model, loader, len(saved.classes), saved.device, progress)
        metrics = scores(matrix, saved.classes)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", {**header, **metrics, "classes": saved.classes,
                                          "confusion_matrix": matrix.tolist()})
        plot_class_iou(metrics, out / "class_iou.png")
        plot_confusion_matrix(matrix.numpy(), list(saved.classes), out / "confusion_matrix.png")
        return metrics

    def predict(self, built: nn.Module, images: list[Tensor], threshold: float) -> list[dict[str, Tensor]]:
        return [{"mask": output["mask"].cpu()} for output in predict_each(built, images)]

    def write_prediction(self, image: Tensor, output: dict[str, Tensor], saved, index: int, path: Path,
                         drawn: Path) -> list[dict]:
        """The class mask drawn over the image into `drawn` (with a legend) and the class index of every pixel
        into masks/NAME.png beside it (a palette PNG); the record {image_id, file_name, mask_file, classes: {name:
        share of the pixels}}."""
        mask = output["mask"]
        write_png(draw_class_mask(to_dtype(image, torch.uint8, scale=True), mask, saved.classes), str(drawn))
        (drawn.parent / "masks").mkdir(exist_ok=True)
        save_index_png(mask, len(saved.classes), drawn.parent / "masks" / drawn.name)
        shares = torch.bincount(mask.flatten(), minlength=len(saved.classes)) / mask.numel()
        return [{"image_id": index, "file_name": str(path), "mask_file": f"masks/{drawn.name}",
                 "classes": {name: round(float(share), 6) for name, share in zip(saved.classes, shares, strict=True)
                             if share > 0}}]

    def exportable(self, saved, box_tolerance: float, score_tolerance: float | None) -> Exportable:
        """The segmenter with its exact resize, and its check: class probabilities within `score_tolerance`
        (`box_tolerance` has no boxes to measure)."""
        tolerance = PROBABILITY_TOLERANCE if score_tolerance is None else score_tolerance
        return segmentation_export(saved.model, saved.classes, tolerance)

    def augmented_train_split(self, data: dict, split: dict, augment: dict) -> tuple[Any, dict | None, list[str]]:
        built = build_segmentation_datasets(data, split, augment)  # image and mask augmented together by the split
        return built.train, None, built.classes


SEGMENTATION = Segmentation()

"""The per-task half of `losslab export`: what a detector's and a segmenter's export saves, how it is checked and
what its metadata file says, and the two file formats (TorchScript, ONNX).

`detection_export` and `segmentation_export` are plain functions of plain values that return an `Exportable`;
commands/export.py picks one by the run's task, saves its model with `save`, checks the file with its `check`
(losslab.evaluation.export_check) and writes its metadata. The metadata is data (keys and values); what each key
means is documented in docs/commands.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from losslab.errors import LosslabError
from losslab.evaluation.export_check import (
    ALWAYS_COMPARED,
    MIN_IOU,
    SWEPT_SIZES,
    Differences,
    MaskDifferences,
    compare_detections,
    compare_masks,
    detection_sample_sizes,
    sample_images,
    segmentation_sample_sizes,
)
from losslab.modeling.heads import set_score_threshold, with_stock_heads
from losslab.modeling.resize import resize_scale, with_exact_resize
from losslab.modeling.segmenters import SegmentationPredictor

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
ONNX_OPSET = 17

Outputs = dict[str, Tensor]  # one image's outputs, by name


@dataclass
class Exportable:
    """A model ready to save, with its check and the task's part of its metadata."""

    model: nn.Module  # takes a list of [3, H, W] float32 images in [0, 1]
    outputs: list[str]  # the names of one image's outputs, in the ONNX file's order
    samples: list[Tensor]  # the check's images
    scripted_output: Callable[[Any], Outputs]  # what the TorchScript module returns -> the first image's outputs
    check: Callable[[list[Outputs]], Differences | MaskDifferences]  # the file's outputs of the samples; raises
    metadata: dict  # classes, input, outputs and the task's keys
    verification: Callable[[Differences | MaskDifferences], dict]  # the check's result as metadata


def detection_export(model: nn.Module, classes: list[str], score_threshold: float, box_tolerance: float,
                     score_tolerance: float, swept_sizes: int = SWEPT_SIZES) -> Exportable:
    """A torchvision detector's export: its stock heads (losslab's loss heads hold Python loss objects), the exact
    resize, no score cut inside (users keep detections scoring at least `score_threshold`; those above
    torchvision's 0.05 stay the same), checked on the min_size square and `swept_sizes` sample images whose
    resize rounds apart in float32."""
    model = with_exact_resize(with_stock_heads(model))
    set_score_threshold(model, 0.0)
    transform = model.transform
    min_size, max_size = transform.min_size[-1], transform.max_size
    sizes = detection_sample_sizes(min_size, max_size, swept_sizes)
    samples = sample_images(sizes)
    with torch.inference_mode():
        expected = [model([image])[0] for image in samples]
    outputs = list(expected[0])  # boxes, labels, scores (RetinaNet: boxes, scores, labels), Mask R-CNN's masks
    scales = [input_scale(transform, *image.shape[-2:]) for image in samples]
    tolerance = Differences(box_tolerance, score_tolerance)
    detections_per_image = model.roi_heads.detections_per_img if hasattr(model, "roi_heads") else \
        model.detections_per_img
    metadata = {
        "task": "detection",
        "classes": ["__background__", *classes],
        "input": input_metadata(transform),
        "outputs": outputs,
        "output_format": {
            "boxes": {"dtype": "float32", "shape": ["N", 4], "layout": "x1y1x2y2", "units": "input_pixels"},
            "labels": {"dtype": "int64", "shape": ["N"], "indexes": "classes"},
            "scores": {"dtype": "float32", "shape": ["N"], "order": "descending"},
            **({"masks": {"dtype": "float32", "shape": ["N", 1, "height", "width"], "values": "probability",
                          "object_above": 0.5}} if "masks" in outputs else {}),
        },
        "max_detections": int(detections_per_image),
        "score_threshold": score_threshold,
    }

    def verification(agreement: Differences) -> dict:
        return {"sample_images": [list(size) for size in sizes], "score_threshold": score_threshold,
                "always_compared": ALWAYS_COMPARED, "min_iou": MIN_IOU,
                "detections_compared": agreement.detections, "unmatched": agreement.unmatched,
                "box_difference_px": agreement.box, "score_difference": agreement.score,
                "box_tolerance_px": box_tolerance, "score_tolerance": score_tolerance}

    return Exportable(model, outputs, samples, lambda returned: returned[1][0],
                      lambda actual: compare_detections(samples, expected, actual, tolerance, score_threshold, scales),
                      metadata, verification)


def input_scale(transform: nn.Module, height: int, width: int) -> float:
    """How many of the model's input pixels one pixel of a `height` x `width` image becomes: the resize scale, or for
    a fixed-size transform (the SSDs stretch every image to a square) the larger of its two axes' scales."""
    if transform.fixed_size is not None:
        fixed_width, fixed_height = transform.fixed_size  # torchvision's order
        return max(fixed_height / height, fixed_width / width)
    return resize_scale(height, width, transform.min_size[-1], transform.max_size)


def segmentation_export(model: nn.Module, classes: list[str], probability_tolerance: float) -> Exportable:
    """A segmenter's export: its inference half (losslab.modeling.segmenters' SegmentationPredictor: one image in,
    its class mask and probabilities out) with the exact resize, checked on three sample shapes."""
    predictor = with_exact_resize(SegmentationPredictor(model.network, model.transform)).eval()
    sizes = segmentation_sample_sizes(predictor.transform.min_size[-1])
    samples = sample_images(sizes)
    with torch.inference_mode():
        expected = [predictor([image])[0] for image in samples]
    metadata = {
        "task": "segmentation",
        "classes": list(classes),
        "input": input_metadata(predictor.transform),
        "outputs": ["mask", "probabilities"],
        "output_format": {"mask": {"dtype": "int64", "shape": ["height", "width"], "indexes": "classes"},
                          "probabilities": {"dtype": "float32", "shape": ["C", "height", "width"],
                                            "values": "softmax_over_classes"}},
    }

    def verification(agreement: MaskDifferences) -> dict:
        return {"sample_images": [list(size) for size in sizes], "probability_difference": agreement.probability,
                "pixels_of_another_class": agreement.pixels_differing, "pixels_compared": agreement.pixels,
                "probability_tolerance": probability_tolerance}

    return Exportable(predictor, metadata["outputs"], samples, lambda returned: returned[0],
                      lambda actual: compare_masks(expected, actual, probability_tolerance), metadata, verification)


def input_metadata(transform: nn.Module) -> dict:
    """What an exported model takes (`transform`: torchvision's GeneralizedRCNNTransform, or the segmenter's): one
    RGB float32 image in [0, 1] of any height and width, resized (shorter side to min_size, longer side at most
    max_size) and normalised inside the model; outputs come back in the input's pixels."""
    return {
        "name": "image",
        "dtype": "float32",
        "shape": [3, "height", "width"],
        "channels": "RGB",
        "value_range": [0.0, 1.0],
        "min_size": int(transform.min_size[-1]),
        "max_size": int(transform.max_size),
        "image_mean": [float(v) for v in transform.image_mean],
        "image_std": [float(v) for v in transform.image_std],
        "resized_inside": True,
        "normalised_inside": True,
    }


def call_metadata(format: str) -> dict:
    """How many images a call of the file takes: TorchScript a list of any length (None), ONNX one."""
    return {"images_per_call": None if format == "torchscript" else 1}


def versions(format: str) -> dict:
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            **({"onnx_opset": ONNX_OPSET} if format == "onnx" else {})}


def require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise LosslabError(f"--format onnx needs onnx and onnxruntime ({error}); pip install 'losslab[export]'.") \
            from error


def save(exportable: Exportable, format: str, path: Path) -> Callable[[Tensor], Outputs]:
    """Write `exportable`'s model into `path` in `format`; return the file, loaded back, as a function of one
    image."""
    if format == "torchscript":
        return save_torchscript(exportable.model, path, exportable.scripted_output)
    return save_onnx(exportable.model, path, exportable.samples[0], exportable.outputs)


def save_torchscript(model: nn.Module, path: Path, unpack: Callable[[Any], Outputs]) -> Callable[[Tensor], Outputs]:
    """torch.jit.script the model into `path`; return the file, loaded back, as a function of one image (`unpack`
    takes what the module returns to that image's outputs)."""
    with warnings.catch_warnings():
        # torch.jit is marked deprecated, and torchvision's scripted detectors warn that they return
        # (losses, detections); both are expected here.
        warnings.simplefilter("ignore")
        torch.jit.save(script(model), str(path))
        exported = torch.jit.load(str(path))

    def predict(image: Tensor) -> Outputs:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return unpack(exported([image]))
    return predict


def script(model: nn.Module) -> torch.jit.ScriptModule:
    """torch.jit.script(model), or a LosslabError naming the code TorchScript cannot compile (smp's UnetPlusPlus
    indexes a ModuleDict with computed names, some timm encoders use Python TorchScript lacks)."""
    try:
        return torch.jit.script(model)
    except (RuntimeError, torch.jit.frontend.NotSupportedError) as error:  # the frontend's errors
        lines = [line.strip() for line in str(error).strip().splitlines()]
        where = "".join(f"; {line}" for line in lines if line.startswith("File "))[-300:]
        raise LosslabError(f"--format torchscript: TorchScript cannot compile this model's network "
                           f"({lines[0].rstrip(':')}{where}); it is the library's code, not yours: export it with "
                           "--format onnx (traced, checked the same way).") from error


def save_onnx(model: nn.Module, path: Path, image: Tensor, names: list[str]) -> Callable[[Tensor], Outputs]:
    """torch.onnx.export the model into `path`, taking one [3, H, W] image of any height and width; return the file,
    run by onnxruntime, as a function of one image."""
    import onnxruntime  # an optional dependency (losslab[export])

    with warnings.catch_warnings():
        # Tracing torchvision's detection code warns about every data-dependent shape it handles; the check
        # against the PyTorch model afterwards is what tells whether the export is right.
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript-based exporter, for which torchvision provides the ONNX forms of its
        # detection ops; the default dynamo exporter needs onnxscript.
        try:
            torch.onnx.export(model, ([image],), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["image"], output_names=names,
                              dynamic_axes={"image": {1: "height", 2: "width"}})
        except torch.onnx.errors.OnnxExporterError as error:  # an operation ONNX has no form of at any image size
            raise LosslabError(f"--format onnx: the ONNX exporter cannot export this model's network for images of "
                               f"any size ({str(error).strip().splitlines()[0][:300]}); export it with --format "
                               "torchscript (checked the same way).") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda image: {name: torch.from_numpy(value)
                          for name, value in zip(names, session.run(None, {"image": image.numpy()}), strict=True)}

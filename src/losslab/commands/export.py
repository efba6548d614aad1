"""`losslab export RUN_DIR --format torchscript|onnx`: a run's model as one self-contained file plus model.json,
checked against the PyTorch model before it is kept (task=segmentation: on sample images of three shapes, every
probability within the tolerance and every pixel's class the same but for near-ties)."""

from __future__ import annotations

import argparse
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from losslab.errors import LosslabError
from losslab.evaluation.saved_model import SavedModel, load_saved_model
from losslab.modeling.heads import set_score_threshold, with_stock_heads
from losslab.modeling.segmenters import SegmentationPredictor

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
ONNX_OPSET = 17
BOX_TOLERANCE = 1e-2  # pixels; float32 reordering in another runtime moves boxes by about 1e-4 px
SCORE_TOLERANCE = 1e-4

Detections = dict[str, Tensor]


@dataclass
class Differences:
    """Largest box and score differences between an exported and the PyTorch model over the detections compared
    (or, as a tolerance, the largest allowed)."""

    box: float = 0.0  # pixels
    score: float = 0.0
    detections: int = 0

    def add(self, other: Differences) -> Differences:
        return Differences(max(self.box, other.box), max(self.score, other.score), self.detections + other.detections)


@dataclass
class ExportResult:
    """The written files and the check of the exported model against the PyTorch model."""

    model_file: Path
    metadata_file: Path
    differences: Differences | MaskDifferences


def export_run(run_dir: Path, format: str = "torchscript", checkpoint: str = "best", out: Path | None = None,
               box_tolerance: float = BOX_TOLERANCE, score_tolerance: float = SCORE_TOLERANCE) -> ExportResult:
    """Write the run's model as `out`/model.pt (TorchScript) or `out`/model.onnx, with `out`/model.json (classes,
    input, normalisation, outputs). Default `out`: RUN_DIR/export.

    The exported model returns its top detections whatever their score; model.json's score_threshold says which
    to keep. Before the file is kept, it predicts sample images and every detection must match the PyTorch
    model's within `box_tolerance` pixels and `score_tolerance`; otherwise LosslabError, and nothing is written.
    """
    if format not in FORMATS:
        raise LosslabError(f"--format {format}: expected one of {', '.join(FORMATS)}.")
    if format == "onnx":
        require_onnxruntime()
    trained = load_saved_model(run_dir, checkpoint, device="cpu")  # CPU: the file then loads anywhere
    if trained.task == "segmentation":
        return export_segmenter(trained, format, run_dir, out, score_tolerance)
    model = with_stock_heads(trained.model)
    # No score cut inside the model: users cut at their own threshold, and the check compares every detection,
    # even of a model that finds little in random images. Detections above torchvision's cut (0.05) stay the same.
    set_score_threshold(model, 0.0)
    samples = sample_images(trained)
    with torch.inference_mode():
        expected = [model([image])[0] for image in samples]
    names = list(expected[0])  # boxes, labels, scores (RetinaNet: boxes, scores, labels) and masks
    tolerance = Differences(box_tolerance, score_tolerance)
    out = Path(run_dir) / "export" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / FORMATS[format]
    partial = path.with_name(path.name + ".tmp")  # renamed to `path` once it passed the check
    try:
        if format == "torchscript":
            exported = save_torchscript(model, partial)
        else:
            exported = save_onnx(model, partial, samples[0], names)
        agreement = compare(expected, [exported(image) for image in samples], tolerance)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    metadata = out / "model.json"
    metadata.write_text(json.dumps(model_metadata(trained, model, format, path.name, names, agreement, tolerance),
                                   indent=2))
    return ExportResult(path, metadata, agreement)


def require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise LosslabError(f"--format onnx needs onnx and onnxruntime ({error}); pip install 'losslab[export]'.") \
            from error


def sample_images(trained: SavedModel) -> list[Tensor]:
    """Two fixed random RGB images: min_size square and 3:2 landscape (a shape the model must resize)."""
    size = trained.cfg["model"]["min_size"]
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, size, size, generator=generator), torch.rand(3, size, size * 3 // 2, generator=generator)]


def max_detections(model: nn.Module) -> int:
    return int(model.roi_heads.detections_per_img if hasattr(model, "roi_heads") else model.detections_per_img)


def save_torchscript(model: nn.Module, path: Path) -> Callable[[Tensor], Detections]:
    """torch.jit.script the model into `path`; return the file, loaded back, as a function of one image."""
    with warnings.catch_warnings():
        # torch.jit is marked deprecated, and torchvision's scripted detectors warn that they return
        # (losses, detections); both are expected here.
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(model), str(path))
        exported = torch.jit.load(str(path))

    def predict(image: Tensor) -> Detections:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return exported([image])[1][0]
    return predict


def save_onnx(model: nn.Module, path: Path, image: Tensor, names: list[str]) -> Callable[[Tensor], Detections]:
    """torch.onnx.export the model into `path`, taking one [3, H, W] image of any height and width; return the file,
    run by onnxruntime, as a function of one image."""
    import onnxruntime  # an optional dependency (losslab[export])

    with warnings.catch_warnings():
        # Tracing torchvision's detection code warns about every data-dependent shape it handles; the check
        # against the PyTorch model afterwards is what tells whether the export is right.
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript-based exporter, for which torchvision provides the ONNX forms of its
        # detection ops; the default dynamo exporter needs onnxscript.
        torch.onnx.export(model, ([image],), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["image"], output_names=names,
                          dynamic_axes={"image": {1: "height", 2: "width"}})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda image: {name: torch.from_numpy(value)
                          for name, value in zip(names, session.run(None, {"image": image.numpy()}), strict=True)}


def compare(expected: list[Detections], actual: list[Detections], tolerance: Differences) -> Differences:
    """How closely the exported model's detections (`actual`) match the PyTorch model's, image by image;
    LosslabError when one is missing or differs beyond `tolerance`."""
    agreement = Differences()
    for index, (wanted, found) in enumerate(zip(expected, actual, strict=True)):
        if len(wanted["boxes"]) != len(found["boxes"]):
            raise LosslabError(f"the exported model found {len(found['boxes'])} detections in sample image {index}, "
                               f"the PyTorch model {len(wanted['boxes'])}; the export is not faithful.")
        agreement = agreement.add(differences(wanted, found, tolerance))
    if math.isinf(agreement.box):
        raise LosslabError("the exported model labels detections differently from the PyTorch model on sample "
                           "images; the export is not faithful.")
    if agreement.box > tolerance.box or agreement.score > tolerance.score:
        raise LosslabError(f"the exported model differs from the PyTorch model on sample images: boxes by up to "
                           f"{agreement.box:.3g} px (tolerance {tolerance.box:g}), scores by up to "
                           f"{agreement.score:.3g} (tolerance {tolerance.score:g}); the export is not faithful.")
    return agreement


def differences(expected: Detections, actual: Detections, tolerance: Differences) -> Differences:
    """Largest box and score difference from each expected detection to the actual detection of the same label
    nearest to it (distance in units of the tolerances); inf when one has no counterpart of its label.

    Pairs are found by distance, not position: detections with tied scores may come out in either order.
    """
    if not len(expected["boxes"]):
        return Differences()
    boxes = (expected["boxes"].double()[:, None] - actual["boxes"].double()[None]).abs().amax(-1)
    scores = (expected["scores"].double()[:, None] - actual["scores"].double()[None]).abs()
    distance = boxes / tolerance.box + scores / tolerance.score
    distance[expected["labels"][:, None] != actual["labels"][None]] = torch.inf
    nearest = distance.argmin(1)
    rows = torch.arange(len(nearest))
    if torch.isinf(distance[rows, nearest]).any():
        return Differences(math.inf, math.inf, len(rows))
    return Differences(float(boxes[rows, nearest].max()), float(scores[rows, nearest].max()), len(rows))


def model_metadata(trained: SavedModel, model: nn.Module, format: str, file_name: str, names: list[str],
                   agreement: Differences, tolerance: Differences) -> dict:
    """model.json: what a program needs to feed the exported model and read its output, without losslab."""
    transform = model.transform
    call = ("model([image, ...]) returns (losses, detections): losses an empty dict, detections one dict per image"
            if format == "torchscript" else
            "session.run(None, {'image': image}) returns one array per name in outputs, for one image per call")
    return {
        "format": format,
        "file": file_name,
        "arch": trained.cfg["model"]["arch"],
        "backbone": trained.cfg["model"]["backbone"],
        "classes": ["__background__", *trained.classes],
        "input": {
            "name": "image",
            "format": "RGB, float32 in [0, 1], shape [3, H, W], any H and W",
            "min_size": int(transform.min_size[0]),
            "max_size": int(transform.max_size),
            "resize": "inside the model: shorter side to min_size, longer side at most max_size; boxes come back "
                      "in the input's pixels",
            "image_mean": [float(v) for v in transform.image_mean],
            "image_std": [float(v) for v in transform.image_std],
            "normalisation": "inside the model: (image - image_mean) / image_std per channel; pass [0, 1] values",
        },
        "call": call,
        "outputs": names,
        "output_format": {
            "boxes": "float32 [N, 4], x1 y1 x2 y2 in input pixels",
            "labels": "int64 [N], index into classes",
            "scores": "float32 [N], highest first",
            **({"masks": "float32 [N, 1, H, W], probabilities; > 0.5 is the object"} if "masks" in names else {}),
        },
        "max_detections": max_detections(model),
        "score_threshold": float(trained.cfg["eval"]["score_threshold"]),
        "score_threshold_note": "the model returns its top max_detections detections whatever their score; keep "
                                "those scoring at least score_threshold (the run's eval.score_threshold, the "
                                "default of losslab predict)",
        "checkpoint": trained.checkpoint.name,
        "epoch": trained.epoch,
        "verification": {"box_difference_px": agreement.box, "score_difference": agreement.score,
                         "detections_compared": agreement.detections, "box_tolerance_px": tolerance.box,
                         "score_tolerance": tolerance.score},
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     **({"onnx_opset": ONNX_OPSET} if format == "onnx" else {})},
    }


# ------------------------------------------------------------------------------------------------ segmentation


@dataclass
class MaskDifferences:
    """How an exported segmenter's output differs from the PyTorch model's over the sample images."""

    probability: float = 0.0  # the largest difference of a class probability
    pixels_differing: int = 0  # pixels given another class (only where the two best classes nearly tie)
    pixels: int = 0  # pixels compared


def export_segmenter(trained: SavedModel, format: str, run_dir: Path, out: Path | None,
                     tolerance: float = SCORE_TOLERANCE) -> ExportResult:
    """task=segmentation's export_run: the segmenter's inference half (losslab.modeling.segmenters'
    SegmentationPredictor: one image in, its class mask and probabilities out), checked on three sample shapes."""
    model = SegmentationPredictor(trained.model.network, trained.model.transform).eval()
    size = trained.cfg["model"]["min_size"]
    generator = torch.Generator().manual_seed(0)
    # Square, landscape and portrait. (Scripted or traced, torchvision's resize computes its scale in float32: where
    # scale x side falls within rounding of a whole number, as 64/103 x 103, it may keep one row more than eager
    # PyTorch. These shapes resize exactly both ways, so the check compares the export itself.)
    samples = [torch.rand(3, height, width, generator=generator)
               for height, width in ((size, size), (size, size * 3 // 2), (size * 3 // 2, size))]
    with torch.inference_mode():
        expected = [model([image])[0] for image in samples]
    names = ["mask", "probabilities"]
    out = Path(run_dir) / "export" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / FORMATS[format]
    partial = path.with_name(path.name + ".tmp")
    try:
        if format == "torchscript":
            exported = save_scripted_segmenter(model, partial)
        else:
            exported = save_onnx(model, partial, samples[0], names)
        agreement = compare_masks(expected, [exported(image) for image in samples], tolerance)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    metadata = out / "model.json"
    metadata.write_text(json.dumps(segmenter_metadata(trained, model, format, path.name, agreement, tolerance),
                                   indent=2))
    return ExportResult(path, metadata, agreement)


def save_scripted_segmenter(model: nn.Module, path: Path) -> Callable[[Tensor], dict[str, Tensor]]:
    """torch.jit.script the segmenter into `path`; return the file, loaded back, as a function of one image."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is marked deprecated
        torch.jit.save(torch.jit.script(model), str(path))
        exported = torch.jit.load(str(path))

    def predict(image: Tensor) -> dict[str, Tensor]:
        with torch.inference_mode():
            return exported([image])[0]
    return predict


def compare_masks(expected: list[dict[str, Tensor]], actual: list[dict[str, Tensor]],
                  tolerance: float) -> MaskDifferences:
    """The exported model's masks and probabilities against the PyTorch model's; LosslabError when a probability
    differs by more than `tolerance`, or a pixel's class differs where the two best classes do not tie within it."""
    agreement = MaskDifferences()
    for index, (wanted, found) in enumerate(zip(expected, actual, strict=True)):
        if found["probabilities"].shape != wanted["probabilities"].shape:
            raise LosslabError(f"the exported model's output for sample image {index} is "
                               f"{list(found['probabilities'].shape)}, the PyTorch model's "
                               f"{list(wanted['probabilities'].shape)}; the export is not faithful.")
        difference = float((found["probabilities"].float() - wanted["probabilities"]).abs().max())
        top_two = wanted["probabilities"].topk(min(2, wanted["probabilities"].shape[0]), dim=0).values
        near_tie = (top_two[0] - top_two[-1]) <= 2 * tolerance
        differing = found["mask"].long() != wanted["mask"]
        if difference > tolerance or (differing & ~near_tie).any():
            raise LosslabError(f"the exported model differs from the PyTorch model on sample image {index}: "
                               f"probabilities by up to {difference:.3g} (tolerance {tolerance:g}), "
                               f"{int(differing.sum())} pixels of another class; the export is not faithful.")
        agreement = MaskDifferences(max(agreement.probability, difference),
                                    agreement.pixels_differing + int(differing.sum()),
                                    agreement.pixels + differing.numel())
    return agreement


def segmenter_metadata(trained: SavedModel, model: nn.Module, format: str, file_name: str,
                       agreement: MaskDifferences, tolerance: float) -> dict:
    """model.json of an exported segmenter."""
    transform = model.transform
    call = ("model([image]) returns one dict per image" if format == "torchscript" else
            "session.run(None, {'image': image}) returns [mask, probabilities] for one image per call")
    return {
        "format": format,
        "file": file_name,
        "task": "segmentation",
        "arch": trained.cfg["model"]["arch"],
        "backbone": trained.cfg["model"]["backbone"],
        "classes": list(trained.classes),
        "input": {
            "name": "image",
            "format": "RGB, float32 in [0, 1], shape [3, H, W], any H and W",
            "min_size": int(transform.min_size[0]),
            "max_size": int(transform.max_size),
            "resize": "inside the model: shorter side to min_size, longer side at most max_size; the output comes "
                      "back at the input's size",
            "image_mean": [float(v) for v in transform.image_mean],
            "image_std": [float(v) for v in transform.image_std],
            "normalisation": "inside the model: (image - image_mean) / image_std per channel; pass [0, 1] values",
        },
        "call": call,
        "outputs": ["mask", "probabilities"],
        "output_format": {"mask": "int64 [H, W], the index into classes of every pixel",
                          "probabilities": "float32 [C, H, W], softmax over the classes"},
        "checkpoint": trained.checkpoint.name,
        "epoch": trained.epoch,
        "verification": {"probability_difference": agreement.probability,
                         "pixels_of_another_class": agreement.pixels_differing, "pixels_compared": agreement.pixels,
                         "probability_tolerance": tolerance},
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     **({"onnx_opset": ONNX_OPSET} if format == "onnx" else {})},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run folder")
    parser.add_argument("--format", default="torchscript", help=f"{' or '.join(FORMATS)} (default torchscript; "
                        "onnx needs pip install 'losslab[export]')")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/export)")
    parser.add_argument("--tolerance", type=float, default=BOX_TOLERANCE, help="largest box difference in pixels "
                        f"allowed between the exported and the PyTorch model (default {BOX_TOLERANCE:g})")


def main(args: argparse.Namespace) -> int:
    print(export_report(export_run(args.run_dir, args.format, args.checkpoint, args.out, args.tolerance)))
    return 0


def export_report(result: ExportResult) -> str:
    """The console lines closing `losslab export`."""
    found = result.differences
    if isinstance(found, MaskDifferences):
        return (f"model: {result.model_file}\nmetadata: {result.metadata_file}\n"
                f"checked against the PyTorch model on {found.pixels} pixels of sample images of three sizes: "
                f"probabilities differ by up to {found.probability:.2g}, {found.pixels_differing} pixels (near-ties) "
                "of another class")
    return (f"model: {result.model_file}\nmetadata: {result.metadata_file}\n"
            f"checked against the PyTorch model on {found.detections} detections of sample images: boxes differ by "
            f"up to {found.box:.2g} px, scores by up to {found.score:.2g}")

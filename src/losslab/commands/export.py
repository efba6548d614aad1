"""`losslab export RUN_DIR --format torchscript|onnx`: a run's model as one self-contained file plus its metadata
(`model.pt.json`, `model.onnx.json`), checked against the PyTorch model before it is kept (task=segmentation: on
sample images of three shapes, every probability within the tolerance and every pixel's class the same but for
near-ties)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

from losslab.data.images import counted
from losslab.errors import LosslabError
from losslab.commands.saved_model import SavedModel, load_saved_model
from losslab.modeling.heads import set_score_threshold, with_stock_heads
from losslab.modeling.resize import resize_scale, with_exact_resize
from losslab.modeling.segmenters import SegmentationPredictor

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
ONNX_OPSET = 17
# (height, width) of the check's random sample images besides the model's min_size square: photos the model
# shrinks (4:3, an odd 3:2, 16:9) and a narrow portrait it enlarges. Their resize scales are ones that float32
# arithmetic rounds to another output size than PyTorch's eager float64 does: what an inexact export gets wrong.
SAMPLE_SIZES = ((600, 800), (427, 640), (1080, 1920), (300, 100))
BOX_TOLERANCE = 1e-2  # pixels of the model's input (the resized image); onnxruntime differs by about 2e-3 there
SCORE_TOLERANCE = 1e-4
ALWAYS_COMPARED = 10  # each sample image's best detections are compared even below the score threshold

Detections = dict[str, Tensor]


@dataclass
class Differences:
    """Largest box and score differences between an exported and the PyTorch model over the detections compared
    (or, as a tolerance, the largest allowed), and the sample image of the largest box difference."""

    box: float = 0.0  # pixels of the model's input
    score: float = 0.0
    detections: int = 0  # the PyTorch model's detections compared
    where: str = ""  # the sample image and detection with the largest box difference

    def add(self, other: Differences) -> Differences:
        worst = other if other.box > self.box else self
        return Differences(worst.box, max(self.score, other.score), self.detections + other.detections, worst.where)


@dataclass
class ExportResult:
    """The written files and the check of the exported model against the PyTorch model."""

    model_file: Path
    metadata_file: Path
    differences: Differences | MaskDifferences


def export_run(run_dir: Path, format: str = "torchscript", checkpoint: str = "best", out: Path | None = None,
               box_tolerance: float = BOX_TOLERANCE, score_tolerance: float = SCORE_TOLERANCE) -> ExportResult:
    """Write the run's model as `out`/model.pt (TorchScript) or `out`/model.onnx, with its metadata beside it
    (model.pt.json or model.onnx.json: classes, input, normalisation, outputs). Default `out`: RUN_DIR/export.

    The exported model returns its top detections whatever their score; the metadata's score_threshold says which
    to keep. Before the file is kept, it and the PyTorch model predict sample images of several sizes, and the
    detections a user keeps must agree (see `compare`) within `box_tolerance` pixels of the model's input and
    `score_tolerance`; otherwise LosslabError, and nothing is written (not even the `out` folder).
    """
    if format not in FORMATS:
        raise LosslabError(f"--format {format}: expected one of {', '.join(FORMATS)}.")
    if min(box_tolerance, score_tolerance) < 0:
        raise LosslabError(f"--tolerance {box_tolerance:g} and --score-tolerance {score_tolerance:g}: expected "
                           "differences of 0 or more.")
    if format == "onnx":
        require_onnxruntime()
    trained = load_saved_model(run_dir, checkpoint, device="cpu")  # CPU: the file then loads anywhere
    if trained.task == "segmentation":
        return export_segmenter(trained, format, run_dir, out, score_tolerance)
    model = with_exact_resize(with_stock_heads(trained.model))
    # No score cut inside the model: users cut at their own threshold. Detections above torchvision's cut (0.05)
    # stay the same.
    set_score_threshold(model, 0.0)
    samples = sample_images(trained.cfg["model"]["min_size"])
    with torch.inference_mode():
        expected = [model([image])[0] for image in samples]
    names = list(expected[0])  # boxes, labels, scores (RetinaNet: boxes, scores, labels) and masks
    tolerance = Differences(box_tolerance, score_tolerance)

    def save(partial: Path) -> Callable:
        return save_torchscript(model, partial) if format == "torchscript" else save_onnx(model, partial, samples[0],
                                                                                         names)

    def check(exported: Callable) -> Differences:
        return compare(samples, expected, [exported(image) for image in samples], tolerance,
                       threshold=float(trained.cfg["eval"]["score_threshold"]),
                       scales=[input_scale(image, model) for image in samples])

    path, agreement = keep_if_faithful(run_dir, out, format, save, check)
    metadata = write_metadata(path, model_metadata(trained, model, format, path.name, names, samples, agreement,
                                                   tolerance))
    return ExportResult(path, metadata, agreement)


def keep_if_faithful(run_dir: Path, out: Path | None, format: str, save: Callable[[Path], Callable],
                     check: Callable[[Callable], Any]) -> tuple[Path, Any]:
    """Save the model into `out` (default RUN_DIR/export) under its format's file name, by way of a partial file
    that `save` writes and returns loaded back; keep it once `check` (given that) passes. On any failure the partial
    file and the folders made for it are removed again; a folder something else filled meanwhile stays."""
    out = Path(run_dir) / "export" if out is None else Path(out)
    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    out.mkdir(parents=True, exist_ok=True)
    path = out / FORMATS[format]
    partial = path.with_name(path.name + ".tmp")
    try:
        agreement = check(save(partial))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
                folder.rmdir()
        raise
    return path, agreement


def write_metadata(path: Path, metadata: dict) -> Path:
    """`path`'s metadata beside it (model.pt.json, model.onnx.json), written atomically."""
    file = path.with_name(path.name + ".json")
    partial = file.with_name(file.name + ".tmp")
    partial.write_text(json.dumps(metadata, indent=2))
    os.replace(partial, file)
    return file


def input_metadata(transform: nn.Module, resize: str) -> dict:
    """What an exported model takes: its image format, sizes and normalisation (`transform`: torchvision's
    GeneralizedRCNNTransform or the segmenter's), with how it resizes (`resize`)."""
    return {
        "name": "image",
        "format": "RGB, float32 in [0, 1], shape [3, H, W], any H and W",
        "min_size": int(transform.min_size[0]),
        "max_size": int(transform.max_size),
        "resize": resize,
        "image_mean": [float(v) for v in transform.image_mean],
        "image_std": [float(v) for v in transform.image_std],
        "normalisation": "inside the model: (image - image_mean) / image_std per channel; pass [0, 1] values",
    }


def require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise LosslabError(f"--format onnx needs onnx and onnxruntime ({error}); pip install 'losslab[export]'.") \
            from error


def sample_images(min_size: int) -> list[Tensor]:
    """Fixed random RGB images: the model's min_size square, then one of each of SAMPLE_SIZES."""
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, height, width, generator=generator)
            for height, width in ((min_size, min_size), *SAMPLE_SIZES)]


def input_scale(image: Tensor, model: nn.Module) -> float:
    """The factor from `image`'s pixels to the pixels of the model's input (the image as it resizes it)."""
    transform = model.transform
    return resize_scale(*image.shape[-2:], transform.min_size[-1], transform.max_size)


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


def compare(samples: list[Tensor], expected: list[Detections], actual: list[Detections], tolerance: Differences,
            threshold: float, scales: list[float]) -> Differences:
    """How closely the exported model's detections (`actual`) match the PyTorch model's on each sample image;
    LosslabError when a compared detection has no counterpart, or one beyond `tolerance`.

    Compared is what a user keeps: the detections scoring at least `threshold`, on either side (and at least each
    image's ALWAYS_COMPARED best, so that the check is never empty). Each needs a counterpart of the same label on
    the other side among its detections down to the cut minus the score tolerance, so that one scoring just above
    the cut on one side and just below it on the other is still paired. Far below the cut detections may come and
    go (one scoring 1e-8 left out by another runtime's rounding). `scales` turn each image's pixels into the
    model's input pixels, in which box differences are measured.
    """
    agreement = Differences()
    for image, wanted, found, scale in zip(samples, expected, actual, scales, strict=True):
        where = f"{image.shape[-2]}x{image.shape[-1]} (height x width)"
        best = wanted["scores"].sort(descending=True).values[:ALWAYS_COMPARED]
        cut = min(threshold, float(best[-1])) if len(best) else threshold
        low = cut - tolerance.score
        agreement = agreement.add(matched(scored(wanted, cut), scored(found, low), scale, tolerance, where,
                                          "the exported model lacks a detection that the PyTorch model has", low))
        reverse = matched(scored(found, cut), scored(wanted, low), scale, tolerance, where,
                          "the exported model has a detection that the PyTorch model lacks", low)
        agreement = agreement.add(replace(reverse, detections=0))  # counted once, from the PyTorch side
    if agreement.box > tolerance.box or agreement.score > tolerance.score:
        raise LosslabError(f"the exported model differs from the PyTorch model on sample images: boxes by up to "
                           f"{agreement.box:.3g} px of the model's input (tolerance {tolerance.box:g}, --tolerance), "
                           f"scores by up to {agreement.score:.3g} (tolerance {tolerance.score:g}, --score-tolerance); "
                           f"the largest box difference is on sample image {agreement.where}. The export is not "
                           "faithful.")
    return agreement


def scored(detections: Detections, cut: float) -> Detections:
    """The detections scoring at least `cut`."""
    keep = detections["scores"] >= cut
    return {name: value[keep] for name, value in detections.items()}


def matched(kept: Detections, pool: Detections, scale: float, tolerance: Differences, where: str, missing: str,
            floor: float) -> Differences:
    """Largest box and score difference from each detection of `kept` to the detection of `pool` (those scoring at
    least `floor`) with the same label nearest to it (distance in units of the tolerances); LosslabError
    (`missing` ...) for one with none.

    Pairs are found by distance, not position: detections with tied scores may come out in either order.
    """
    if not len(kept["boxes"]):
        return Differences(where=where)
    boxes = (kept["boxes"].double()[:, None] - pool["boxes"].double()[None]).abs().amax(-1) * scale
    scores = (kept["scores"].double()[:, None] - pool["scores"].double()[None]).abs()
    distance = boxes / max(tolerance.box, 1e-12) + scores / max(tolerance.score, 1e-12)
    distance[kept["labels"][:, None] != pool["labels"][None].to(kept["labels"].dtype)] = torch.inf
    distance = torch.cat([distance, torch.full((len(distance), 1), torch.inf, dtype=distance.dtype)], 1)
    nearest = distance.argmin(1)  # the added last column: no counterpart
    rows = torch.arange(len(nearest))
    unpaired = torch.isinf(distance[rows, nearest]).nonzero().flatten()
    if len(unpaired):
        raise LosslabError(f"{missing} on sample image {where}: {described(kept, int(unpaired[0]))}; the other has no "
                           f"detection of that label scoring at least {floor:.4g} (the lowest score compared minus "
                           "--score-tolerance). The export is not faithful.")
    box, score = boxes[rows, nearest], scores[rows, nearest]
    worst = int(box.argmax())
    return Differences(float(box[worst]), float(score.max()), len(rows), f"{where}, at {described(kept, worst)}")


def described(detections: Detections, index: int) -> str:
    box = [round(v, 1) for v in detections["boxes"][index].tolist()]
    return f"label {int(detections['labels'][index])}, score {float(detections['scores'][index]):.4g}, box {box}"


def model_metadata(trained: SavedModel, model: nn.Module, format: str, file_name: str, names: list[str],
                   samples: list[Tensor], agreement: Differences, tolerance: Differences) -> dict:
    """The metadata file (model.pt.json, model.onnx.json): what a program needs to feed the exported model and read
    its output, without losslab, and how it was checked."""
    transform = model.transform
    call = ("model([image, ...]) returns (losses, detections): losses an empty dict, detections one dict per image"
            if format == "torchscript" else
            "session.run(None, {'image': image}) returns one array per name in outputs, for one image per call")
    return {
        "format": format,
        "file": file_name,
        "arch": trained.cfg["model"]["arch"],
        "backbone": trained.cfg["model"]["backbone"],
        "variant": trained.cfg["model"]["variant"],
        "classes": ["__background__", *trained.classes],
        "input": input_metadata(transform, "inside the model, to the same size as the PyTorch model: shorter side to "
                                "min_size, longer side at most max_size; boxes come back in the input's pixels"),
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
        "verification": {
            "sample_images": [list(image.shape[-2:]) for image in samples],  # [height, width]
            "compared": f"detections scoring at least score_threshold, and each image's {ALWAYS_COMPARED} best",
            "detections_compared": agreement.detections,
            "box_difference_px": agreement.box,  # pixels of the model's input (the resized image)
            "score_difference": agreement.score,
            "box_tolerance_px": tolerance.box,
            "score_tolerance": tolerance.score,
        },
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

    def save(partial: Path) -> Callable:
        if format == "torchscript":
            return save_scripted_segmenter(model, partial)
        return save_onnx(model, partial, samples[0], names)

    path, agreement = keep_if_faithful(run_dir, out, format, save,
                                       lambda exported: compare_masks(expected, [exported(i) for i in samples],
                                                                      tolerance))
    metadata = write_metadata(path, segmenter_metadata(trained, model, format, path.name, agreement, tolerance))
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
    """The metadata of an exported segmenter (model.pt.json, model.onnx.json)."""
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
        "input": input_metadata(transform, "inside the model: shorter side to min_size, longer side at most max_size; "
                                "the output comes back at the input's size"),
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
    parser.add_argument("--tolerance", type=float, default=BOX_TOLERANCE, help="largest box difference allowed "
                        "between the exported and the PyTorch model, in pixels of the model's input (default "
                        f"{BOX_TOLERANCE:g})")
    parser.add_argument("--score-tolerance", type=float, default=SCORE_TOLERANCE, help="largest score difference "
                        f"allowed (default {SCORE_TOLERANCE:g})")


def main(args: argparse.Namespace) -> int:
    print(export_report(export_run(args.run_dir, args.format, args.checkpoint, args.out, args.tolerance,
                                   args.score_tolerance)))
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
            f"checked against the PyTorch model on {counted(found.detections, 'detection')} of "
            f"{counted(len(SAMPLE_SIZES) + 1, 'sample image')}: boxes differ by up to {found.box:.2g} px of the "
            f"model's input, scores by up to {found.score:.2g}")

"""`losslab export RUN_DIR --format torchscript|onnx`: a run's model as one self-contained file plus its metadata
(`model.pt.json`, `model.onnx.json`), kept only once it reproduces the PyTorch model on sample images.

This module is the command: its arguments, the files it writes and what it prints. What each task's export holds
and its metadata are in losslab.evaluation.exporting, the check in losslab.evaluation.export_check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from losslab.commands.saved_model import load_saved_model
from losslab.data.images import counted
from losslab.errors import LosslabError
from losslab.evaluation import exporting
from losslab.evaluation.export_check import BOX_TOLERANCE, PROBABILITY_TOLERANCE, SCORE_TOLERANCE, MaskDifferences


@dataclass
class ExportResult:
    """The written files and the check of the exported model against the PyTorch model."""

    model_file: Path
    metadata_file: Path
    differences: Any  # export_check.Differences (detection) or MaskDifferences (segmentation)
    samples: int  # sample images checked


def export_run(run_dir: Path, format: str = "torchscript", checkpoint: str = "best", out: Path | None = None,
               box_tolerance: float = BOX_TOLERANCE, score_tolerance: float | None = None) -> ExportResult:
    """Write the run's model as `out`/model.pt (TorchScript) or `out`/model.onnx, with its metadata beside it
    (model.pt.json or model.onnx.json). Default `out`: RUN_DIR/export.

    Before the file is kept, it and the PyTorch model predict sample images, and their outputs must agree within
    the tolerances (box differences in pixels of the model's input; `score_tolerance` is a detector's score
    tolerance, default SCORE_TOLERANCE, or a segmenter's probability tolerance, default PROBABILITY_TOLERANCE);
    otherwise LosslabError, and nothing is written (not even the `out` folder).
    """
    if format not in exporting.FORMATS:
        raise LosslabError(f"--format {format}: expected one of {', '.join(exporting.FORMATS)}.")
    for option, tolerance in (("--tolerance", box_tolerance), ("--score-tolerance", score_tolerance)):
        if tolerance is not None and tolerance < 0:
            raise LosslabError(f"{option} {tolerance:g}: expected a difference of 0 or more.")
    if format == "onnx":
        exporting.require_onnxruntime()
    trained = load_saved_model(run_dir, checkpoint, device="cpu")  # CPU: the file then loads anywhere
    exportable = trained.task.exportable(trained, box_tolerance, score_tolerance)
    path, agreement = keep_if_faithful(
        run_dir, out, format, lambda partial: exporting.save(exportable, format, partial),
        lambda exported: exportable.check([exported(image) for image in exportable.samples]))
    model = trained.cfg["model"]
    metadata = {"format": format, "file": path.name, "arch": model["arch"], "backbone": model["backbone"],
                **({"variant": model["variant"]} if "variant" in model else {}), **exportable.metadata,
                "call": exporting.call_metadata(format), "checkpoint": trained.checkpoint.name,
                "epoch": trained.epoch, "verification": exportable.verification(agreement),
                "versions": exporting.versions(format)}
    return ExportResult(path, write_metadata(path, metadata), agreement, len(exportable.samples))


def keep_if_faithful(run_dir: Path, out: Path | None, format: str, save: Callable[[Path], Callable],
                     check: Callable[[Callable], Any]) -> tuple[Path, Any]:
    """Save the model into `out` (default RUN_DIR/export) under its format's file name, by way of a partial file
    that `save` writes and returns loaded back; keep it once `check` (given that) passes. On any failure the partial
    file and the folders made for it are removed again; a folder something else filled meanwhile stays."""
    out = Path(run_dir) / "export" if out is None else Path(out)
    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    out.mkdir(parents=True, exist_ok=True)
    path = out / exporting.FORMATS[format]
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run folder")
    parser.add_argument("--format", default="torchscript", help=f"{' or '.join(exporting.FORMATS)} (default "
                        "torchscript; onnx needs pip install 'losslab[export]')")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/export)")
    parser.add_argument("--tolerance", type=float, default=BOX_TOLERANCE, help="largest box difference allowed "
                        "between the exported and the PyTorch model, in pixels of the model's input (default "
                        f"{BOX_TOLERANCE:g})")
    parser.add_argument("--score-tolerance", type=float, help="largest score difference allowed (default "
                        f"{SCORE_TOLERANCE:g}); task=segmentation: of a class probability (default "
                        f"{PROBABILITY_TOLERANCE:g})")


def main(args: argparse.Namespace) -> int:
    print(export_report(export_run(args.run_dir, args.format, args.checkpoint, args.out, args.tolerance,
                                   args.score_tolerance)))
    return 0


def export_report(result: ExportResult) -> str:
    """The console lines closing `losslab export`."""
    found = result.differences
    files = f"model: {result.model_file}\nmetadata: {result.metadata_file}\n"
    if isinstance(found, MaskDifferences):
        return (f"{files}checked against the PyTorch model on {found.pixels} pixels of "
                f"{counted(result.samples, 'sample image')}: probabilities differ by up to {found.probability:.2g}, "
                f"{found.pixels_differing} pixels (near-ties) of another class")
    return (f"{files}checked against the PyTorch model on {counted(found.detections, 'detection')} of "
            f"{counted(result.samples, 'sample image')}: boxes differ by up to {found.box:.2g} px of the "
            f"model's input, scores by up to {found.score:.2g}")

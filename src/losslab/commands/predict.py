"""`losslab predict RUN_DIR SOURCE...`: a finished run's model on image files, drawn and as COCO results
(task=segmentation: each image's class mask drawn over it with a legend, and as an index PNG)."""

from __future__ import annotations

import argparse
import glob
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from losslab.commands.saved_model import load_saved_model
from losslab.data.images import IMAGE_EXTENSIONS, counted, decode_pixels
from losslab.errors import LosslabError
from losslab.modeling.runtime import eval_mode

log = logging.getLogger(__name__)

@dataclass
class PredictResult:
    """Where `predict_images` wrote, how many images it predicted and which files it could not read."""

    out_dir: Path
    predicted: int
    detections: int  # task=segmentation: masks written
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, why it could not be read)
    counted: str = "detections"  # what `detections` counts


def predict_images(run_dir: Path, sources: Sequence[str | Path], checkpoint: str = "best",
                   score_threshold: float | None = None, out: Path | None = None, device: str = "auto",
                   progress: bool = True) -> PredictResult:
    """Predict every image `sources` name (files, folders, glob patterns) with the run's `checkpoint` and write
    into `out` (default RUN_DIR/predict) one PNG per image with the detections drawn, and predictions.json.

    predictions.json is a COCO results list: {image_id, file_name, category_id, bbox [x, y, w, h], score} and,
    for Mask R-CNN, an RLE `segmentation`. image_id is the image's 0-based position in the list of files the
    sources expand to (unreadable files keep their position); category_id is the training data's own id of the
    class (COCO's category ids; 1..K in the run's class order for data without them). Only detections with
    score >= `score_threshold` (default: the run's eval.score_threshold) are kept.
    Files that cannot be read are logged and skipped. Each image is its own forward pass, so its predictions do
    not depend on the other files named (a batch would pad every image to the largest one).
    """
    trained = load_saved_model(run_dir, checkpoint, device)
    files = expand_sources(sources)
    threshold = trained.cfg["eval"]["score_threshold"] if score_threshold is None else score_threshold
    out = Path(run_dir) / "predict" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)

    result = PredictResult(out, predicted=0, detections=0, counted=trained.task.predicted)
    records: list[dict] = []
    drawn_names = output_names(files)
    with (eval_mode(trained.model), torch.inference_mode(), logging_redirect_tqdm(),  # warnings above the bar
          tqdm(total=len(files), desc="predict", unit="image", disable=not progress, dynamic_ncols=True) as bar):
        for index, path, image in readable(files, result.skipped):
            (output,) = trained.task.predict(trained.model, [image.to(trained.device)], threshold)
            records += trained.task.write_prediction(image, output, trained, index, path, out / drawn_names[index])
            result.predicted += 1
            bar.update(index + 1 - bar.n)  # files done so far, skipped ones included
        bar.update(len(files) - bar.n)  # unreadable files after the last readable one
    result.detections = len(records)
    (out / "predictions.json").write_text(json.dumps(records))
    return result


def expand_sources(sources: Sequence[str | Path]) -> list[Path]:
    """The image files of `sources`, in order, each file once: a file as given, a folder's images (not its
    sub-folders) sorted by name, a glob pattern's matches (`**` recurses) sorted."""
    files: dict[Path, Path] = {}  # the same file named twice (a folder and a glob) is predicted once
    empty = []
    for source in sources:
        found = source_files(Path(source))
        if not found:
            empty.append(source)
        files |= {path.resolve(): path for path in found if path.resolve() not in files}  # reported as given
    if not files:
        raise LosslabError(f"no images found in {', '.join(map(str, sources))}; expected image files, folders "
                           f"holding images or glob patterns matching them ({', '.join(IMAGE_EXTENSIONS)}).")
    for source in empty:
        log.warning("no images in %s", source)
    return list(files.values())


def source_files(source: Path) -> list[Path]:
    """The files one source names: the file itself, a folder's images, or a glob pattern's images."""
    if source.is_file():
        return [source]  # named explicitly: read whatever its extension
    if source.is_dir():
        candidates = sorted(source.iterdir())
    else:
        candidates = [Path(match) for match in sorted(glob.glob(str(source), recursive=True))]
    return [path for path in candidates if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS]


def output_names(files: list[Path]) -> list[str]:
    """The PNG name of each file's drawing: its stem, suffixed _1, _2, ... where stems repeat."""
    names, taken = [], set()
    for path in files:
        name, n = f"{path.stem}.png", 0
        while name.lower() in taken:  # lower: a case-insensitive file system would merge them
            n += 1
            name = f"{path.stem}_{n}.png"
        taken.add(name.lower())
        names.append(name)
    return names


def readable(files: list[Path], skipped: list[tuple[Path, str]]) -> Iterator[tuple[int, Path, Tensor]]:
    """(index, path, image) of each readable file in turn; unreadable ones are logged and appended to `skipped`."""
    for index, path in enumerate(files):
        try:
            image = decode_pixels(path, exif_transpose=True)
        except Exception as error:  # decoders raise many types for truncated, corrupt or foreign files
            reason = unreadable_reason(error)
            log.warning("skipped %s: %s", path, reason)
            skipped.append((path, reason))
            continue
        yield index, path, image


def unreadable_reason(error: Exception) -> str:
    """The first line of why a file could not be read."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run folder")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders of images, glob "
                        "patterns (quote them; ** recurses)")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--score-threshold", type=float, help="keep detections scoring at least this "
                        "(default: the run's eval.score_threshold)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/predict)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")


def main(args: argparse.Namespace) -> int:
    print(prediction_report(predict_images(args.run_dir, args.sources, args.checkpoint, args.score_threshold,
                                           args.out, args.device)))
    return 0


def prediction_report(result: PredictResult) -> str:
    """The console lines closing `losslab predict`."""
    lines = [f"predicted {counted(result.predicted, 'image')}, {result.detections} {result.counted}: drawn images "
             f"and predictions.json in {result.out_dir}"]
    if result.skipped:
        lines.append(f"skipped {counted(len(result.skipped), 'file')} that could not be read (see the warnings above)")
    return "\n".join(lines)

"""`losslab evaluate RUN_DIR`: a finished run's checkpoint scored on a split, with its task's files: COCO exports
and plots (task=segmentation: mIoU, per-class IoU and the pixels' confusion matrix)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from losslab.commands.saved_model import load_saved_model
from losslab.data.loaders import make_loaders
from losslab.errors import LosslabError

log = logging.getLogger(__name__)


def evaluate_run(run_dir: Path, split: str = "val", checkpoint: str = "best", score_threshold: float | None = None,
                 device: str = "auto", progress: bool = True, out: Path | None = None) -> dict:
    """Predict `split` with the run's `checkpoint` (best | last) and write `out` (default RUN_DIR/eval_<split>/):
    metrics.json, predictions.json (COCO results), ground_truth.json (COCO instances),
    pr_curve.png and confusion_matrix.png (task=segmentation: metrics.json, class_iou.png and
    confusion_matrix.png of the pixels). Returns the metrics, after what they score (scored_what's keys: the
    split, the checkpoint, its epoch and the image count)."""
    if split not in ("train", "val", "test"):
        raise LosslabError(f"--split {split}: expected train, val or test.")
    trained = load_saved_model(run_dir, checkpoint, device)
    cfg = trained.cfg
    threshold = cfg["eval"]["score_threshold"] if score_threshold is None else score_threshold
    data = trained.task.build_data(cfg["data"], cfg["split"])  # no augmentation
    loader = make_loaders(data, cfg["data"]["batch_size"], cfg["data"]["num_workers"],
                          pin_memory=trained.device.type == "cuda")[split]
    if len(loader.dataset) == 0:
        raise LosslabError(f"the {split} split of {run_dir} is empty (split.{split}=0); evaluate another split.")
    out = run_dir / f"eval_{split}" if out is None else Path(out)
    header = {"split": split, "checkpoint": checkpoint, "epoch": trained.epoch, "images": len(loader.dataset)}
    return header | trained.task.evaluate(trained, data, loader, header, out, threshold, progress)


def scored_what(metrics: dict) -> str:
    """What an evaluation scored, in one line: split, checkpoint file, its epoch and the image count (on the val
    split, the numbers metrics.csv holds for that epoch, as a sweep ranked them)."""
    return (f"{metrics['split']} split ({metrics['images']} images), checkpoints/{metrics['checkpoint']}.pt "
            f"(epoch {metrics['epoch']})")


def metrics_table(metrics: dict) -> str:
    """The headline numbers and per-class AP (IoU) as console lines."""
    kind = "IoU" if "mIoU" in metrics else "AP"
    width = 16 if kind == "IoU" else 12  # "pixel_accuracy"
    head = [f"{name:<{width}}{metrics[name]:.4f}" for name in ("mAP", "mAP50", "mAP75", "mAR100", "mask_mAP",
                                                           "precision", "recall", "F1", "mIoU", "mDice",
                                                           "pixel_accuracy") if name in metrics]
    per_class = [f"  {name.removeprefix(kind + '/'):<{width - 2}}{value:.4f}" for name, value in metrics.items()
                 if name.startswith(f"{kind}/") and not np.isnan(value)]
    return "\n".join(head + ([f"{kind} per class:"] + per_class if per_class else []))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run folder")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--score-threshold", type=float, help="default: the run's eval.score_threshold")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/eval_SPLIT)")


def main(args: argparse.Namespace) -> int:
    out = args.out or args.run_dir / f"eval_{args.split}"
    metrics = evaluate_run(args.run_dir, args.split, args.checkpoint, args.score_threshold, args.device, out=out)
    print(f"scored: {scored_what(metrics)}")
    print(metrics_table(metrics))
    print(f"written to {out}")
    return 0

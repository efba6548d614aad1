"""summary.json's contents and the closing console line of a run."""

from __future__ import annotations

import logging
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
import torchvision

from losslab.config.plan import Plan
from losslab.data.images import counted
from losslab.reporting.diagnosis import diagnose
from losslab.reporting.history import History
from losslab.training.checkpoints import checkpoint_epoch

log = logging.getLogger(__name__)

LOADER_ONLY = ("batch_size", "num_workers")  # data keys that change how images are loaded, not which


def measured_on(plan: Plan, val_images: int | None) -> dict:
    """What a run's validation numbers are measured on, for comparisons to check before they rank runs: the task,
    the dataset (its options but the loader's), the split, the val images, the reference loss val/ref_loss
    scores with, and the image size (a loss's scale depends on the last two)."""
    sections = plan.sections
    model = sections["model"]
    return {"task": plan.task.name,
            "data": {key: value for key, value in sections["data"].items() if key not in LOADER_ONLY},
            "split": sections["split"], "val_images": val_images,
            "reference_loss": plan.task.reference_name(model), "image_size": [model["min_size"], model["max_size"]]}


def run_summary(history: History, status: str, error: str | None, wall_time: float, loss: str,
                device: torch.device | None, classes: list[str] | None, class_weights: list[float] | None,
                start: dict | None, run_dir: Path, basis: dict) -> dict:
    """What summary.json holds: status, the losses trained with (`loss`, as losslab runs shows them), the
    selection metric (`monitor`) and the best (kept) epoch it picked, best and last rows, diagnosis, wall time,
    device, classes, what the weights started from, what the numbers were measured on (`basis`: measured_on),
    versions."""
    return {
        "status": status,
        "error": error,
        "loss": loss,
        "epochs_run": len(history.rows),
        "stopped_epoch": history.rows[-1]["epoch"] if status == "stopped_early" else None,
        "monitor": history.monitor,
        "best_epoch": history.best_epoch,
        "best": history.best or {},
        "last": history.rows[-1] if history.rows else {},
        "best_mAP": max((row["val/mAP"] for row in history.rows if "val/mAP" in row), default=None),
        "best_mIoU": max((row["val/mIoU"] for row in history.rows if "val/mIoU" in row), default=None),
        "diagnosis": diagnose(history.rows, val_images=basis["val_images"],
                              trains_batch_norm=bool(start and start.get("batch_norm_layers"))),
        "measured_on": basis,
        "wall_time_s": round(wall_time, 2),
        "device": None if device is None else torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "classes": classes,
        "class_weights": class_weights,
        "start": start,
        "run_dir": str(run_dir),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "losslab": _version()},
    }


def report(summary: dict, run_dir: Path) -> None:
    """The closing console line: how the run ended and what it left. A failure is reported by whoever handles the
    exception."""
    if summary["status"] == "failed":
        return
    parts = [f"{summary['status']} after {counted(summary['epochs_run'], 'epoch')}"]
    best = summary["best"]
    if best:
        parts.append(f"best epoch {summary['best_epoch']}, val loss "
                     + (f"{best['val/loss']:.4f}" if "val/loss" in best else "n/a")
                     + (f", mAP {best['val/mAP']:.3f}" if "val/mAP" in best else
                        f", best mAP {summary['best_mAP']:.3f}" if summary["best_mAP"] is not None else
                        f", best mIoU {summary['best_mIoU']:.3f}" if summary.get("best_mIoU") is not None else ""))
        parts.append(summary["diagnosis"]["text"])
    if (run_dir / "loss_curves.png").is_file():
        parts.append(f"curves: {run_dir / 'loss_curves.png'}")
    if summary["status"] == "interrupted":
        parts.append(summary["error"])
    log.info("%s", " | ".join(parts))


def stop_message(run_dir: Path, history: History, reason: str, files_failed: bool = False) -> str:
    """What a run that stopped before its end (`reason`) left to continue from, in one sentence. With
    `files_failed` the last epoch trained could not write its files: an epoch whose checkpoint is not on disk is
    not finished, and the message names the last one that is."""
    epoch = checkpoint_epoch(run_dir / "checkpoints" / "last.pt")
    trained = history.rows[-1]["epoch"] if history.rows else 0
    if files_failed and epoch != trained:
        complete = f"epoch {epoch} is the last whose files are complete" if epoch else "no epoch's files are complete"
        reason = f"epoch {trained} is not finished (its files are incomplete; {complete}): {reason}"
    if epoch is not None:
        return f"{reason} after epoch {epoch}; continue with: train resume={run_dir}"
    if files_failed:
        return f"{reason} with no checkpoint on disk: there is nothing to resume; start the run again"
    return (f"{reason} during epoch {len(history.rows) + 1} with no checkpoint on disk: there is nothing to resume; "
            "start the run again")


def _version() -> str:
    try:
        return version("losslab")
    except PackageNotFoundError:
        return "unknown"

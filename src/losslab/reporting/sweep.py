"""Summaries of a multirun folder: sweep_summary.csv and sweep_curves.png across its jobs."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from losslab.reporting.comparison import (
    best_of,
    default_mode,
    distinguishing,
    job_order,
    overrides_of,
    ranked,
    read_summary,
)
from losslab.reporting.curves import plot_sweep_curves
from losslab.reporting.history import read_metrics

log = logging.getLogger(__name__)

ERROR_MARK = "][ERROR] "  # how train.log's format ("[%(asctime)s][%(levelname)s] %(message)s") marks an error
SUMMARY_COLUMNS = ("rank", "job", "overrides", "status", "rank_by", "best", "best_epoch", "best_val_loss",
                   "best_val_mAP", "val_ref_loss", "epochs_run", "diagnosis", "error", "run_dir", "all_overrides")


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep (those Hydra wrote overrides for), in job-number order."""
    return sorted((p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")), key=job_order)


def job_summary(job_dir: Path, history: list[dict], label: list[str], overrides: list[str], rank_by: str,
                mode: str) -> dict:
    """One sweep_summary.csv row; a job without summary.json (killed, or never started) is 'failed'; `error` is
    why a job failed, in one line (`failure_reason`).

    `history` is the job's metrics.csv rows; `label` is the part of the job's `overrides` that sets it
    apart from the other jobs; "best" is the job's best `rank_by` value over its epochs and
    "best_epoch" the epoch it came from.
    """
    written = read_summary(job_dir)  # {} when the job wrote none
    summary = written or {"status": "failed"}
    best, best_epoch = best_of(history, rank_by, mode)
    return {
        "job": job_dir.name,
        "overrides": " ".join(label),
        "status": summary.get("status"),
        "rank_by": rank_by,
        "best": best,
        "best_epoch": best_epoch,
        "best_val_loss": best_of(history, "val/loss", "min")[0],
        "best_val_mAP": best_of(history, "val/mAP", "max")[0],
        "val_ref_loss": (summary.get("best") or {}).get("val/ref_loss"),
        "epochs_run": summary.get("epochs_run"),
        "diagnosis": (summary.get("diagnosis") or {}).get("text"),
        "error": failure_reason(job_dir, written),
        "run_dir": str(job_dir),
        "all_overrides": " ".join(overrides),
    }


def failure_reason(job_dir: Path, summary: dict) -> str | None:
    """The first line of the job's summary.json `error`; without summary.json (a job refused before its run
    began, e.g. by optimizer.lr=-1), the last error its train.log records: the exception's message, logged as
    `[time][ERROR] message` (conf/train.yaml's log format). None when there is neither."""
    if summary:
        error = summary.get("error")
        return str(error).strip().splitlines()[0] if error else None
    log_file = job_dir / "train.log"
    lines = log_file.read_text(errors="replace").splitlines() if log_file.is_file() else []
    errors = [line.split(ERROR_MARK, 1)[1].strip() for line in lines if ERROR_MARK in line]
    return errors[-1] if errors else None


def summarize_sweep(sweep_dir: Path, rank_by: str = "val/loss", mode: str | None = None) -> list[dict]:
    """Write sweep_summary.csv (jobs ranked by their best `rank_by`, any metrics.csv column; `mode`
    min or max, by default chosen from the column's name) and sweep_curves.png into `sweep_dir`;
    return the summary rows, best first."""
    mode = mode or default_mode(rank_by)
    jobs = job_dirs(sweep_dir)
    histories = [read_metrics(job / "metrics.csv") if (job / "metrics.csv").is_file() else [] for job in jobs]
    overrides = [overrides_of(job) for job in jobs]
    rows = [job_summary(job, history, label, job_overrides, rank_by, mode) for job, history, label, job_overrides
            in zip(jobs, histories, distinguishing(overrides), overrides, strict=True)]
    best_first = ranked(rows, mode)  # `rows` stay in job order (for the curves), each given its rank
    with (sweep_dir / "sweep_summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(best_first)
    curves = [(row["overrides"] or row["job"], history) for row, history, job in zip(rows, histories, jobs, strict=True)
              if (job / "metrics.csv").is_file()]
    plot_sweep_curves(curves, sweep_dir / "sweep_curves.png", columns=("val/loss", "val/ref_loss", "train/loss"))
    return best_first

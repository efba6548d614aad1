"""Summaries of a multirun folder: sweep_summary.csv and sweep_curves.png across its jobs."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from losslab.history import read_metrics
from losslab.plots import plot_sweep_curves
from losslab.runs import distinguishing, job_order, overrides_of, read_summary

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("job", "overrides", "status", "best_epoch", "best_val_loss", "val_ref_loss", "epochs_run",
                   "diagnosis", "error",
                   "run_dir", "all_overrides")


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep (those Hydra wrote overrides for), in job-number order."""
    return sorted((p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")), key=job_order)


def job_summary(job_dir: Path, label: list[str], overrides: list[str]) -> dict:
    """One sweep_summary.csv row; a job without summary.json (killed, or never started) is 'failed'.

    `label` is the part of the job's `overrides` that sets it apart from the other jobs.
    """
    summary = read_summary(job_dir) or {"status": "failed"}
    return {
        "job": job_dir.name,
        "overrides": " ".join(label),
        "status": summary.get("status"),
        "best_epoch": summary.get("best_epoch"),
        "best_val_loss": (summary.get("best") or {}).get("val/loss"),
        "val_ref_loss": (summary.get("best") or {}).get("val/ref_loss"),
        "epochs_run": summary.get("epochs_run"),
        "diagnosis": (summary.get("diagnosis") or {}).get("text"),
        "error": summary.get("error"),
        "run_dir": str(job_dir),
        "all_overrides": " ".join(overrides),
    }


def summarize_sweep(sweep_dir: Path) -> list[dict]:
    """Write sweep_summary.csv and sweep_curves.png into `sweep_dir`; return the summary rows."""
    jobs = job_dirs(sweep_dir)
    overrides = [overrides_of(job) for job in jobs]
    rows = [job_summary(job, label, job_overrides)
            for job, label, job_overrides in zip(jobs, distinguishing(overrides), overrides, strict=True)]
    with (sweep_dir / "sweep_summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    curves = [(row["overrides"] or row["job"], read_metrics(job / "metrics.csv"))
              for row, job in zip(rows, jobs, strict=True) if (job / "metrics.csv").is_file()]
    plot_sweep_curves(curves, sweep_dir / "sweep_curves.png", columns=("val/loss", "val/ref_loss", "train/loss"))
    return rows

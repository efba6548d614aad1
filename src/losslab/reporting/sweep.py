"""Summaries of a multirun folder when it ends: sweep_summary.csv (every job ranked) and sweep_curves.png; with
repeated seeds also sweep_stats.csv and sweep_stats.png (groups of repeats, their statistics and verdicts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from losslab.reporting.comparability import comparability_note
from losslab.reporting.comparison import (
    FinishedRun,
    balanced,
    distinguishing,
    job_order,
    kept_epoch,
    kept_value,
    read_run,
    run_ranking,
    write_table,
)
from losslab.reporting.curves import GRAD_SHARE, plot_group_statistics, plot_sweep_curves, sweep_columns
from losslab.reporting.ranking import Ranking, ranked
from losslab.reporting.repeats import STATS_COLUMNS, Group, group_curves, group_runs, group_statistics, has_repeats

ERROR_MARK = "][ERROR] "  # how train.log's format ("[%(asctime)s][%(levelname)s] %(message)s") marks an error
SUMMARY_COLUMNS = ("rank", "job", "overrides", "status", "rank_by", "value", "kept_epoch", "checkpoint", "val_loss",
                   "val_mAP", "val_ref_loss", "epochs_run", "grad_shares", "balanced_weights", "diagnosis", "error",
                   "rank_reason", "comparable", "run_dir", "all_overrides")


@dataclass
class SweepReport:
    """A finished sweep: how its jobs were ranked, their sweep_summary.csv rows (best first), the jobs grouped
    by everything but the repeat key (a group per job when nothing was repeated), and the warning its table and
    figures carry when the ranking metric cannot compare the jobs fairly (None when it can)."""

    ranking: Ranking
    jobs: list[dict]
    groups: list[Group]
    note: str | None = None

    @property
    def repeated(self) -> bool:
        return has_repeats(self.groups)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep (those Hydra wrote overrides for), in job-number order."""
    return sorted((p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")), key=job_order)


def job_summary(run: FinishedRun, label: list[str], ranking: Ranking, note: str | None) -> dict:
    """One sweep_summary.csv row; `label` is the part of the job's overrides that sets it apart from the other
    jobs; "value" is the job's ranking value at "kept_epoch", the epoch of the weights it keeps ("checkpoint"),
    and val_loss, val_mAP and val_ref_loss are that epoch's too: `losslab evaluate` of the checkpoint reproduces
    them."""
    value, epoch = kept_value(run, ranking.metric)
    return {
        "job": run.path.name,
        "overrides": " ".join(label),
        "status": run.status,
        "rank_by": ranking.metric,
        "value": value,
        "kept_epoch": epoch,
        "checkpoint": kept_epoch(run)[1],
        "val_loss": kept_value(run, "val/loss")[0],
        "val_mAP": kept_value(run, "val/mAP")[0],
        "val_ref_loss": kept_value(run, "val/ref_loss")[0],
        "epochs_run": run.summary.get("epochs_run"),
        "grad_shares": final_shares(run.history),
        "balanced_weights": balanced(run.summary.get("balanced_weights")),
        "diagnosis": (run.summary.get("diagnosis") or {}).get("text"),
        "error": failure_reason(run.path, run.summary),
        "rank_reason": ranking.reason,
        "comparable": note or "yes",
        "run_dir": str(run.path),
        "all_overrides": " ".join(run.overrides),
    }


def final_shares(history: list[dict]) -> str | None:
    """The last epoch's gradient shares, 'classification 0.41 box_regression 0.33 ...'; None without them."""
    last = history[-1] if history else {}
    shares = [(key.removeprefix(GRAD_SHARE), value) for key, value in last.items() if key.startswith(GRAD_SHARE)]
    return " ".join(f"{name} {value:.3f}" for name, value in shares) or None


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


def summarize_sweep(sweep_dir: Path, rank_by: str | None = None, mode: str | None = None,
                    repeat_key: str = "trainer.seed") -> SweepReport:
    """Write sweep_summary.csv (jobs ranked by `rank_by` at their kept epochs, by default chosen by
    losslab.reporting.ranking from the jobs' selection metric and losses; `mode` min or max, by default from the
    column's name) and sweep_curves.png (a line per job, or per group of jobs differing only in `repeat_key`:
    their mean and range) into `sweep_dir`. A job without summary.json (killed, or never started) is 'failed'.
    Jobs the metric cannot compare (another dataset, split, task; for a loss, another reference or image size)
    are ranked with a warning in the table and the figure."""
    runs = [read_run(job, unfinished="failed") for job in job_dirs(sweep_dir)]
    ranking = run_ranking(runs, rank_by, mode, "sweep.rank_by")
    note = comparability_note(runs, ranking, forced=rank_by is not None)
    rows = [job_summary(run, label, ranking, note) for run, label in
            zip(runs, distinguishing([run.overrides for run in runs]), strict=True)]
    jobs = ranked(rows, ranking.mode, value="value")  # `rows` stay in job order (for the curves), each given its rank
    write_table(sweep_dir / "sweep_summary.csv", jobs, SUMMARY_COLUMNS)
    groups = group_runs(runs, repeat_key)
    if has_repeats(groups):
        curves = group_curves(groups)
    else:  # every job, whatever its status: a diverged job's curve shows where it went wrong
        curves = [(row["overrides"] or row["job"], [run.history], run.path) for row, run in zip(rows, runs, strict=True)
                  if run.history]
    plot_sweep_curves(curves, sweep_dir / "sweep_curves.png", columns=sweep_columns(ranking.metric), note=note)
    return SweepReport(ranking, jobs, groups, note)


def summarize_repeats(sweep_dir: Path, report: SweepReport, baseline: str | None) -> list[dict]:
    """Write sweep_stats.csv (per group of repeats: n, mean, sd, 95% interval, the difference from the `baseline`
    group with its interval, p-value and verdict; see losslab.reporting.repeats) and sweep_stats.png; return the
    rows, best group first. A `baseline` that names no single group is a LosslabError."""
    rows = group_statistics(report.groups, report.ranking, baseline, "sweep.baseline")
    write_table(sweep_dir / "sweep_stats.csv", rows, STATS_COLUMNS)
    plot_group_statistics(rows, report.ranking.mode, sweep_dir / "sweep_stats.png", note=report.note)
    return rows

"""Finished runs read back (summary.json, overrides, config) and tabled: the rows of `losslab compare` (runs or
whole sweeps side by side) and `losslab runs` (what is in an outputs folder). No figures: those are in curves."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import yaml

from losslab.errors import LosslabError
from losslab.reporting.history import best_row, read_metrics
from losslab.run_lock import owner, resumable

COMPARE_COLUMNS = ("rank", "run", "overrides", "status", "metric", "best", "best_epoch", "epochs_run", "run_dir")
RUNS_COLUMNS = ("date", "status", "model", "loss", "best_val_loss", "epochs_run", "resumable", "size", "run_dir")
# Files whose presence makes a folder a run for `losslab runs` (split.json: a run killed in its first epoch).
RUN_MARKERS = ("summary.json", "metrics.csv", "split.json", "checkpoints/last.pt")


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run folders named directly (holding metrics.csv) or found one level below a sweep folder."""
    runs: list[Path] = []
    for path in paths:
        if (path / "metrics.csv").is_file():
            runs.append(path)
            continue
        jobs = sorted((p.parent for p in path.glob("*/metrics.csv")), key=job_order)
        if not jobs:
            raise LosslabError(f"{path} holds no losslab run: expected a run folder with metrics.csv, or a sweep "
                               "folder whose job folders hold one (multirun/DATE/TIME).")
        runs.extend(jobs)
    return runs


def job_order(path: Path) -> tuple:
    """Sort key for job folders: Hydra's numbered jobs in numeric order, then any others by name."""
    return (str(path.parent), not path.name.isdigit(), int(path.name) if path.name.isdigit() else 0, path.name)


def overrides_of(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def distinguishing(overrides: list[list[str]]) -> list[list[str]]:
    """Each run's overrides without those every run shares (all of them when there is one run)."""
    if len(overrides) < 2:
        return overrides
    shared = set.intersection(*map(set, overrides))
    return [[o for o in run if o not in shared] for run in overrides]


def default_mode(metric: str) -> str:
    """Losses are better low; mAP, AP, AR, precision, recall and F1 high."""
    name = metric.rsplit("/", 1)[-1].lower()
    return "max" if name.startswith(("map", "ap", "ar", "mar", "precision", "recall", "f1")) else "min"


def compare_runs(paths: list[Path], metric: str = "val/loss", mode: str | None = None) -> list[dict]:
    """One row per run: its best `metric` over the epochs, ranked best first (runs without it last)."""
    mode = mode or default_mode(metric)
    runs = expand_runs(paths)
    labels = distinguishing([overrides_of(run) for run in runs])
    rows = []
    for run, label in zip(runs, labels, strict=True):
        history = read_metrics(run / "metrics.csv")
        best = best_of(history, metric, mode)
        status = read_summary(run).get("status", "unknown")
        rows.append({"run": run.name, "overrides": " ".join(label), "status": status,
                     "metric": metric, "best": best[0], "best_epoch": best[1], "epochs_run": len(history),
                     "run_dir": str(run), "history": history})
    if not any(row["best"] is not None for row in rows):
        columns = sorted({key for row in rows for r in row["history"] for key in r if key != "epoch"})
        raise LosslabError(f"--metric {metric} is in no run's metrics.csv; expected one of {', '.join(columns)}.")
    return ranked(rows, mode)


def best_of(history: list[dict], metric: str, mode: str) -> tuple[float | None, int | None]:
    """The best finite value of `metric` over a run's epochs and the epoch it came from; (None, None) if none."""
    values = [(r[metric], r["epoch"]) for r in history if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
    if not values:
        return None, None
    return min(values) if mode == "min" else max(values, key=lambda value: (value[0], -value[1]))


def ranked(rows: list[dict], mode: str) -> list[dict]:
    """`rows` sorted by their "best" value (rows without one last), each given its "rank"."""
    sign = 1 if mode == "min" else -1
    rows = sorted(rows, key=lambda row: (row["best"] is None, sign * (row["best"] or 0.0)))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def list_runs(root: Path) -> list[dict]:
    """Every run below `root`, newest first (by the time it last wrote a file): finished ones as their summary.json
    says, and those without one as `running` (another process holds the folder's lock) or `killed` (listed with
    the epochs its metrics.csv holds)."""
    if not root.is_dir():
        raise LosslabError(f"{root} is not a folder; expected where runs are written (outputs or multirun).")
    folders = {path.parents[marker.count("/")] for marker in RUN_MARKERS for path in root.glob(f"**/{marker}")}
    rows = []
    for run in folders:
        summary = read_summary(run)
        history = read_metrics(run / "metrics.csv") if (run / "metrics.csv").is_file() else []
        config_path = run / ".hydra" / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
        title = run_title(config or {})
        last_write = max((run / marker).stat().st_mtime for marker in RUN_MARKERS if (run / marker).exists())
        if summary:
            status, epochs, best = summary.get("status"), summary.get("epochs_run"), summary.get("best") or {}
        else:
            status = "running" if owner(run) else "killed"
            epochs, best = len(history), best_row(history, "val/loss", "min") or {}
        rows.append({
            "time": last_write,
            "date": datetime.fromtimestamp(last_write).strftime("%Y-%m-%d %H:%M"),
            "status": status,
            "model": title.split(", loss: ")[0],
            "loss": title.split(", loss: ")[-1],
            "best_val_loss": best.get("val/loss"),
            "epochs_run": epochs,
            "resumable": "yes" if resumable(run) else "no",
            "size": f"{folder_size(run) / 1e6:.0f} MB",
            "run_dir": str(run),
        })
    return sorted(rows, key=lambda row: row["time"], reverse=True)


def folder_size(folder: Path) -> int:
    """The bytes of the files below `folder`, a file hard-linked twice (best.pt and last.pt) counted once."""
    seen, total = set(), 0
    for path in Path(folder).rglob("*"):
        try:
            stat = path.lstat()
        except OSError:  # removed while we looked
            continue
        if path.is_symlink() or not path.is_file() or (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        total += stat.st_size
    return total


def format_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """A plain fixed-width console table."""
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(r[i]) for r in cells]) for i, column in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def read_summary(run: Path) -> dict:
    """A run's summary.json, or {} when it never wrote one (killed, or failed before it could)."""
    path = run / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def run_title(config: dict) -> str:
    """'<arch> (<backbone>), loss: <non-default choices>' from a run's plain config."""
    model, loss = config.get("model", {}), config.get("loss", {})
    choices = [f"{key}={loss[key]['name']}" for key in ("cls", "box", "objectness", "mask")
               if loss.get(key, {}).get("name", "default") != "default"]
    return f"{model.get('arch', '?')} ({model.get('backbone', '?')}), loss: {', '.join(choices) or 'default'}"

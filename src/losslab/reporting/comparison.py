"""Finished runs read back (metrics.csv, summary.json, overrides, config) and tabled: the rows of `losslab compare`
(runs or whole sweeps side by side) and `losslab runs` (what is in an outputs folder). No figures: those are in
curves."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from losslab.errors import LosslabError
from losslab.reporting.history import best_row, read_metrics
from losslab.reporting.ranking import EVALUATED_YARDSTICKS, Ranking, choose_ranking, default_mode, ranked
from losslab.run_lock import owner, saved_resume_state, to_finish

COMPARE_COLUMNS = ("rank", "run", "overrides", "status", "metric", "value", "kept_epoch", "checkpoint", "epochs_run",
                   "rank_reason", "comparable", "run_dir")
RUNS_COLUMNS = ("date", "status", "model", "loss", "start", "best_val_loss", "epochs_run", "resumable", "size",
                "run_dir")
# Files whose presence makes a folder a run for `losslab runs` (split.json: a run killed in its first epoch).
RUN_MARKERS = ("summary.json", "metrics.csv", "split.json", "checkpoints/last.pt")


@dataclass
class FinishedRun:
    """What a run folder holds; each part empty when its file is missing."""

    path: Path
    overrides: list[str]  # the command-line overrides Hydra recorded
    config: dict  # .hydra/config.yaml as written (interpolations unresolved)
    history: list[dict]  # metrics.csv rows
    summary: dict  # summary.json
    status: str


def read_run(path: Path, unfinished: str = "unknown") -> FinishedRun:
    """The run in `path`; `unfinished` is the status of a run without summary.json (still running, or killed)."""
    config_path = path / ".hydra" / "config.yaml"
    summary = read_summary(path)
    return FinishedRun(path=path, overrides=overrides_of(path),
                       config=(yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {},
                       history=read_metrics(path / "metrics.csv") if (path / "metrics.csv").is_file() else [],
                       summary=summary, status=summary.get("status", unfinished))


def load_runs(paths: list[Path]) -> list[FinishedRun]:
    """The runs in run folders named directly or one level below a sweep folder: folders holding metrics.csv, or
    summary.json alone (a run that failed before its first epoch)."""
    runs: list[Path] = []
    for path in paths:
        if _is_run(path):
            runs.append(path)
            continue
        jobs = sorted((p for p in path.glob("*/") if _is_run(p)), key=job_order)
        if not jobs:
            raise LosslabError(f"{path} holds no losslab run: expected a run folder with metrics.csv, or a sweep "
                               "folder whose job folders hold one (multirun/DATE/TIME).")
        runs.extend(jobs)
    return [read_run(run) for run in runs]


def _is_run(path: Path) -> bool:
    return (path / "metrics.csv").is_file() or (path / "summary.json").is_file()


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


def selection_of(run: FinishedRun) -> str | None:
    """The metric that picked `run`'s kept epoch: summary.json's monitor (trainer.monitor, auto resolved), else its
    config's trainer.monitor when it names one; None when neither says (a run killed before its summary, with
    trainer.monitor=auto)."""
    monitor = run.summary.get("monitor") or run.config.get("trainer", {}).get("monitor")
    return None if monitor in (None, "auto") else monitor


def kept_epoch(run: FinishedRun) -> tuple[int | None, str]:
    """The epoch of the weights `run` keeps and the file holding them: its last epoch with
    trainer.checkpoints=last, else the best epoch by its selection metric (best.pt); (None, "-") without one."""
    if not run.history:
        return None, "-"
    choice = str(run.config.get("trainer", {}).get("checkpoints", "best")).lower()
    if choice == "last":
        return run.history[-1]["epoch"], "last.pt"
    file = "-" if choice in ("none", "false") else "best.pt"
    if "best_epoch" in run.summary:
        return run.summary["best_epoch"], file
    monitor = selection_of(run)
    mode = run.config.get("trainer", {}).get("mode", "auto")
    best = best_row(run.history, monitor, default_mode(monitor) if mode == "auto" else mode) if monitor else None
    return (best["epoch"], file) if best else (None, "-")


def kept_value(run: FinishedRun, metric: str) -> tuple[float | None, int | None]:
    """`metric` at `run`'s kept epoch and that epoch: what `losslab evaluate` of the kept checkpoint reproduces.
    The value is None where that epoch has none (not evaluated, or not finite)."""
    epoch, _ = kept_epoch(run)
    row = next((r for r in run.history if r["epoch"] == epoch), {})
    value = row.get(metric)
    return (value if isinstance(value, float) and math.isfinite(value) else None), epoch


def run_ranking(runs: list[FinishedRun], requested: str | None, mode: str | None, source: str) -> Ranking:
    """How `runs` are ranked (see losslab.reporting.ranking): by `requested` (named by `source`), else by the
    selection metric the runs share (a common yardstick where it is not comparable, or they differ)."""
    configs = [run.config for run in runs if run.config]
    monitors = {selection_of(run) for run in runs}
    monitor = monitors.pop() if len(monitors) == 1 else None
    evaluated = next((metric for metric in EVALUATED_YARDSTICKS
                      if all(kept_value(run, metric)[0] is not None for run in runs if run.history)), None)
    return choose_ranking(requested, mode, monitor, [config["loss"] for config in configs if "loss" in config],
                          evaluated, source)


def run_names(paths: list[Path]) -> list[str]:
    """Each run folder named by its path below the folder that holds them all: `2` for the jobs of one sweep,
    `A/2` and `B/2` for the jobs of sweeps A and B side by side, a run folder's own name for one run."""
    resolved = [path.resolve() for path in paths]
    if len(set(resolved)) < 2:
        return [path.name for path in resolved]
    root = Path(os.path.commonpath(resolved))
    return [str(path.relative_to(root)) for path in resolved]


def compare_runs(runs: list[FinishedRun], ranking: Ranking) -> list[dict]:
    """One row per run (named by run_names): the ranking metric at the epoch of the weights it keeps, ranked best
    first (runs without it last)."""
    labels = distinguishing([run.overrides for run in runs])
    rows = []
    for run, name, label in zip(runs, run_names([run.path for run in runs]), labels, strict=True):
        value, epoch = kept_value(run, ranking.metric)
        rows.append({"run": name, "overrides": " ".join(label), "status": run.status,
                     "metric": ranking.metric, "value": value, "kept_epoch": epoch, "checkpoint": kept_epoch(run)[1],
                     "epochs_run": len(run.history), "rank_reason": ranking.reason, "run_dir": str(run.path),
                     "history": run.history})
    if not any(row["value"] is not None for row in rows):
        columns = sorted({key for row in rows for r in row["history"] for key in r if key != "epoch"})
        raise LosslabError(f"{ranking.metric} ({ranking.reason}) is in no run's metrics.csv; expected --metric "
                           f"with one of {', '.join(columns)}.")
    return ranked(rows, ranking.mode, value="value")


def list_runs(root: Path) -> list[dict]:
    """Every run below `root`, newest first (by the time it last wrote a file): finished ones as their summary.json
    says, and those without one as `running` (another process holds the folder's lock) or `killed` (listed with
    the epochs its metrics.csv holds). `resumable`: yes (a whole resume state), no, or finish (every planned epoch
    trained, the end missing: `train resume=` finishes it without training)."""
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
        saved = saved_resume_state(run)
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
            "loss": title.split(", loss: ")[-1] + (f" (balanced: {weights})" if (weights := balanced(
                summary.get("balanced_weights"))) else ""),
            "start": start_of(config or {}),
            "best_val_loss": best.get("val/loss"),
            "epochs_run": epochs,
            "resumable": "no" if saved is None else "finish" if to_finish(run, saved) else "yes",
            "size": f"{folder_size(run) / 1e6:.0f} MB",
            "run_dir": str(run),
        })
    return sorted(rows, key=lambda row: row["time"], reverse=True)


def balanced(weights: dict | None) -> str | None:
    """loss.balance=initial's weights by loss phase, 'box_regression 9.48' (a schedule: 'phase 0: ...; phase 1: ...');
    None when the job did not balance."""
    if not weights:
        return None
    said = {phase: " ".join(f"{name} {value:.3g}" for name, value in chosen.items())
            for phase, chosen in weights.items()}
    return said["0"] if len(said) == 1 and "0" in said else "; ".join(f"phase {p}: {w}" for p, w in said.items())


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


def write_table(path: Path, rows: list[dict], columns: tuple[str, ...]) -> Path:
    """`rows` as a CSV file with `columns` (other keys of the rows left out)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


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
    """'<arch> (<backbone>[, v2]), loss: <non-default choices>' from a run's plain config."""
    model = config.get("model", {})
    variant = ", v2" if model.get("variant") == "v2" else ""
    loss = loss_title(config.get("loss", {}))
    return f"{model.get('arch', '?')} ({model.get('backbone', '?')}{variant}), loss: {loss}"


def loss_title(loss: dict) -> str:
    """A `loss` config section's non-default choices, e.g. 'cls=focal, box=myloss.iou(eps=0.1)'; 'default' if none.
    A user loss (`custom`) is named by its `_target_` and parameters."""
    choices = [f"{key}={choice_title(loss[key])}" for key in ("cls", "box", "objectness", "mask", "centerness", "pixel")
               if loss.get(key, {}).get("name", "default") != "default"]
    return ", ".join(choices) or "default"


def choice_title(choice: dict) -> str:
    """One component's choice: its name, or a user loss's `_target_(parameter=value, ...)`."""
    if choice.get("name") != "custom":
        return choice["name"]
    params = ", ".join(f"{name}={value}" for name, value in choice.items() if name not in ("name", "_target_"))
    return f"{choice.get('_target_')}({params})"


def start_of(config: dict) -> str:
    """What a run's weights started from: its model.weights (coco, a file, a run folder), imagenet (an ImageNet
    backbone) or scratch."""
    model = config.get("model", {})
    return model.get("weights") or ("imagenet" if model.get("pretrained") else "scratch")

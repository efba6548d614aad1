"""Per-epoch rows, metrics.csv and summary.json, and a diagnosis read off the loss curves."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from losslab.errors import LosslabError
from losslab.losses import COMPONENTS

LEADING_COLUMNS = ("epoch", "phase", "lr")
TRAILING_COLUMNS = ("time_s",)


def metric_columns(rows: list[dict]) -> list[str]:
    """Every column in the rows: epoch and lr, train/ then val/ losses (total first, components in
    their canonical order), any other metrics, and time_s last."""
    seen = list(dict.fromkeys(key for row in rows for key in row))
    order = []
    for prefix in ("train/", "val/", "val/ref_"):
        order += [f"{prefix}loss"] + [f"{prefix}{c}" for c in COMPONENTS]
    ranked = [c for c in LEADING_COLUMNS if c in seen] + [c for c in order if c in seen]
    rest = [c for c in seen if c not in ranked and c not in TRAILING_COLUMNS]
    return ranked + rest + [c for c in TRAILING_COLUMNS if c in seen]


def write_metrics(path: Path, rows: list[dict]) -> None:
    """Write all rows to metrics.csv, replacing the file atomically."""
    columns = metric_columns(rows)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict]:
    """metrics.csv rows with numbers as numbers (epoch as int) and empty cells left out."""
    with path.open(newline="") as f:
        rows = []
        for raw in csv.DictReader(f):
            row = {}
            for key, value in raw.items():
                if value in ("", None):
                    continue
                try:
                    row[key] = int(value) if key == "epoch" else float(value)
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


def write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def best_row(rows: list[dict], monitor: str, mode: str) -> dict | None:
    """The row with the best finite `monitor` value (the earliest on ties), or None."""
    candidates = [r for r in rows if isinstance(r.get(monitor), float) and math.isfinite(r[monitor])]
    if not candidates:
        return None
    pick = min if mode == "min" else max
    return pick(candidates, key=lambda r: r[monitor])


class History:
    """The metrics.csv rows of a run so far and its best row by `monitor` (`mode` min or max)."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.rows: list[dict] = []
        self.best: dict | None = None

    @property
    def best_epoch(self) -> int | None:
        return self.best["epoch"] if self.best else None

    def improves(self, row: dict) -> bool:
        """Whether `row` would be the new best."""
        if self.monitor not in row:
            columns = ", ".join(c for c in metric_columns([row]) if c != "epoch")
            raise LosslabError(
                f"trainer.monitor={self.monitor} is not a metrics.csv column; expected one of {columns}."
            )
        return best_row([row] if self.best is None else [self.best, row], self.monitor, self.mode) is row

    def add(self, row: dict) -> bool:
        """Append an epoch's row; return whether it is the new best."""
        improved = self.improves(row)
        self.rows.append(row)
        if improved:
            self.best = row
        return improved


class EarlyStopping:
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    Read off the rows themselves, so a resumed run decides exactly as an uninterrupted one.
    """

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta

    def epochs_without_improvement(self, rows: list[dict]) -> tuple[int, float]:
        """Epochs since the last improvement, and the best value so far."""
        best, waited = None, 0
        for row in rows:
            value = row.get(self.monitor, math.nan)
            better = (best is None and math.isfinite(value)) or (best is not None and (
                value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta))
            if better:
                best, waited = value, 0
            else:
                waited += 1
        return waited, best

    def should_stop(self, rows: list[dict]) -> bool:
        return self.epochs_without_improvement(rows)[0] >= max(1, self.patience)

    def reason(self, rows: list[dict]) -> str:
        waited, best = self.epochs_without_improvement(rows)
        return (f"{self.monitor} has not improved on {best:.4g} by more than {self.min_delta:g} "
                f"for {waited} epochs (patience {self.patience})")


def diagnose(rows: list[dict], rise_tolerance: float = 0.1, overfit_tolerance: float = 0.05,
             underfit_tolerance: float = 0.1, plateau_tolerance: float = 0.01) -> dict:
    """What the curves say, checked in this order:

    - diverging: a loss went non-finite, or the train loss ended more than `rise_tolerance`
      (relative) above its minimum: the optimisation itself is going the wrong way.
    - overfitting: val loss ended more than `overfit_tolerance` above its minimum while the train
      loss kept falling after that epoch.
    - underfitting: over at least 3 epochs the train loss fell by less than `underfit_tolerance`
      of its first value: the model does not fit even the training data (capacity, lr).
    - plateau: the last third of the epochs (at least 2) brought no val loss more than
      `plateau_tolerance` below the best before them.
    - learning: otherwise.
    """
    if not rows:
        return {"state": "not started", "since_epoch": None, "text": "no epoch finished"}
    epochs = [r["epoch"] for r in rows]
    train = [r.get("train/loss", math.nan) for r in rows]
    val = [r.get("val/loss", math.nan) for r in rows]
    bad = [e for e, t, v in zip(epochs, train, val, strict=True) if not (math.isfinite(t) and math.isfinite(v))]
    if bad:
        return _verdict("diverging", bad[0], f"the loss became non-finite at epoch {bad[0]}")
    low = _argmin(train)
    if train[-1] > train[low] * (1 + rise_tolerance):
        return _verdict("diverging", epochs[low + 1], f"train loss rose from {train[low]:.4g} at epoch "
                        f"{epochs[low]} to {train[-1]:.4g}")
    best = _argmin(val)
    if val[-1] > val[best] * (1 + overfit_tolerance) and train[-1] < train[best]:
        return _verdict("overfitting", epochs[best + 1], f"val loss is up from {val[best]:.4g} at epoch "
                        f"{epochs[best]} to {val[-1]:.4g} while train loss kept falling")
    if len(train) >= 3 and train[0] - train[-1] < underfit_tolerance * abs(train[0]):
        return _verdict("underfitting", epochs[0], f"train loss fell only from {train[0]:.4g} to {train[-1]:.4g} "
                        f"in {len(train)} epochs")
    window = max(2, len(val) // 3)
    if len(val) > window:
        before = _argmin(val[:-window])
        if min(val[-window:]) > val[before] * (1 - plateau_tolerance):
            return _verdict("plateau", epochs[before + 1], f"no val loss more than {plateau_tolerance:.0%} "
                            f"below {val[before]:.4g} (epoch {epochs[before]}) in the last {window} epochs")
    return _verdict("learning", None, f"val loss fell from {val[0]:.4g} to {val[-1]:.4g}")


def _argmin(values: list[float]) -> int:
    return min(range(len(values)), key=values.__getitem__)


def _verdict(state: str, since: int | None, reason: str) -> dict:
    text = state if since is None or state == "diverging" else f"{state} since epoch {since}"
    return {"state": state, "since_epoch": since, "text": f"{text}: {reason}"}

"""Per-epoch rows, metrics.csv and summary.json, and a diagnosis read off the loss curves."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from losslab.losses import COMPONENTS

LEADING_COLUMNS = ("epoch", "lr")
TRAILING_COLUMNS = ("time_s",)


def metric_columns(rows: list[dict]) -> list[str]:
    """Every column in the rows: epoch and lr, train/ then val/ losses (total first, components in
    their canonical order), any other metrics, and time_s last."""
    seen = list(dict.fromkeys(key for row in rows for key in row))
    order = []
    for split in ("train", "val"):
        order += [f"{split}/loss"] + [f"{split}/{c}" for c in COMPONENTS]
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


def diagnose(rows: list[dict], plateau_tolerance: float = 0.01, overfit_tolerance: float = 0.02) -> dict:
    """What the curves say: diverging, overfitting (since the best val epoch), plateau or learning.

    - diverging: a loss went non-finite, or the train loss ended above twice its minimum.
    - overfitting: val loss rose more than `overfit_tolerance` (relative) above its minimum while
      train loss kept falling after that epoch.
    - plateau: over the last third of the epochs (at least 2) val loss improved by less than
      `plateau_tolerance` of its value.
    - learning: otherwise.
    """
    train = [r.get("train/loss", math.nan) for r in rows]
    val = [r.get("val/loss", math.nan) for r in rows]
    epochs = [r["epoch"] for r in rows]
    if not rows:
        return {"state": "not started", "since_epoch": None, "text": "no epoch finished"}
    bad = [e for e, t, v in zip(epochs, train, val, strict=True) if not (math.isfinite(t) and math.isfinite(v))]
    if bad:
        return _verdict("diverging", bad[0], f"the loss became non-finite at epoch {bad[0]}")
    low = min(range(len(train)), key=train.__getitem__)
    if train[-1] > 2 * train[low] and low < len(train) - 1:
        return _verdict("diverging", epochs[low + 1], f"train loss rose from {train[low]:.4g} at epoch "
                        f"{epochs[low]} to {train[-1]:.4g}")
    best = min(range(len(val)), key=val.__getitem__)
    if best < len(val) - 1 and val[-1] > val[best] * (1 + overfit_tolerance) and train[-1] < train[best]:
        return _verdict("overfitting", epochs[best + 1], f"val loss is up from {val[best]:.4g} at epoch "
                        f"{epochs[best]} to {val[-1]:.4g} while train loss kept falling")
    window = max(2, len(val) // 3)
    if len(val) > window:
        start = len(val) - 1 - window
        if val[start] - min(val[start:]) < plateau_tolerance * abs(val[start]):
            return _verdict("plateau", epochs[start + 1], f"val loss changed by less than "
                            f"{plateau_tolerance:.0%} over the last {window} epochs")
    return _verdict("learning", None, f"val loss fell from {val[0]:.4g} to {val[-1]:.4g}")


def _verdict(state: str, since: int | None, reason: str) -> dict:
    text = state if since is None or state == "diverging" else f"{state} since epoch {since}"
    return {"state": state, "since_epoch": since, "text": f"{text}: {reason}"}

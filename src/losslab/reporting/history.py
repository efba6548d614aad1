"""Per-epoch rows: metrics.csv (written and read back), summary.json, and the best row by a monitored column."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from losslab.errors import LosslabError
from losslab.losses.catalogue import COMPONENTS

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

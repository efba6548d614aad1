"""Early stopping, decided from the metrics.csv rows alone."""

from __future__ import annotations

import math

from losslab.data.images import counted


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
                f"for {counted(waited, 'epoch')} (patience {self.patience})")

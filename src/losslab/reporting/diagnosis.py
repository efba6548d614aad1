"""What the loss curves say: diverging, overfitting, underfitting, plateau, not improving or learning. Each verdict's
words follow from the numbers it quotes (tests/reporting/test_diagnosis.py checks it over made-up curves)."""

from __future__ import annotations

import math


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
    - not improving: the val loss did not end more than `plateau_tolerance` below where it started.
    - learning: otherwise (the val loss ended lower than it started).

    One finished epoch is too little to judge: unless its loss is non-finite, the verdict is "too early".
    """
    if not rows:
        return {"state": "not started", "since_epoch": None, "text": "no epoch finished"}
    epochs = [r["epoch"] for r in rows]
    train = [r.get("train/loss", math.nan) for r in rows]
    val = [r.get("val/loss", math.nan) for r in rows]
    bad = [e for e, t, v in zip(epochs, train, val, strict=True) if not (math.isfinite(t) and math.isfinite(v))]
    if bad:
        return _verdict("diverging", bad[0], f"the loss became non-finite at epoch {bad[0]}")
    if len(rows) == 1:
        return _verdict("too early", None, f"one epoch is too little to judge the curves (val loss {val[0]:.4g}); "
                        "train for 2 or more")
    low = _argmin(train)
    if train[-1] > train[low] * (1 + rise_tolerance):
        return _verdict("diverging", epochs[low + 1], f"train loss rose from {train[low]:.4g} at epoch "
                        f"{epochs[low]} to {train[-1]:.4g}")
    best = _argmin(val)
    if val[-1] > val[best] * (1 + overfit_tolerance) and train[-1] < train[best]:
        return _verdict("overfitting", epochs[best + 1], f"val loss is up from {val[best]:.4g} at epoch "
                        f"{epochs[best]} to {val[-1]:.4g} while train loss kept falling")
    if len(train) >= 3 and train[0] - train[-1] < underfit_tolerance * abs(train[0]):
        went = "fell only" if _quoted(train[-1]) < _quoted(train[0]) else "did not fall:"
        return _verdict("underfitting", epochs[0], f"train loss {went} from {train[0]:.4g} to {train[-1]:.4g} "
                        f"in {len(train)} epochs")
    window = max(2, len(val) // 3)
    if len(val) > window:
        before = _argmin(val[:-window])
        if min(val[-window:]) > val[before] * (1 - plateau_tolerance):
            return _verdict("plateau", epochs[before + 1], f"no val loss more than {plateau_tolerance:.0%} "
                            f"below {val[before]:.4g} (epoch {epochs[before]}) in the last {window} epochs")
    if val[-1] >= val[0] * (1 - plateau_tolerance):
        went = "rose" if _quoted(val[-1]) > _quoted(val[0]) else "went"
        return _verdict("not improving", None, f"val loss {went} from {val[0]:.4g} to {val[-1]:.4g} in {len(val)} "
                        f"epochs (best {val[best]:.4g} at epoch {epochs[best]})")
    return _verdict("learning", None, f"val loss fell from {val[0]:.4g} to {val[-1]:.4g}")


def _quoted(value: float) -> float:
    """`value` as a verdict quotes it (4 significant digits), so that its words compare what the reader sees."""
    return float(f"{value:.4g}")


def _argmin(values: list[float]) -> int:
    return min(range(len(values)), key=values.__getitem__)


def _verdict(state: str, since: int | None, reason: str) -> dict:
    text = state if since is None or state == "diverging" else f"{state} since epoch {since}"
    return {"state": state, "since_epoch": since, "text": f"{text}: {reason}"}

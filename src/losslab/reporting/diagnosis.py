"""What the loss curves say: diverging, train or val loss rising, overfitting, underfitting, plateau, not improving
or learning, unless too few epochs or validation images leave nothing to judge. Each verdict's words follow from
the numbers it quotes (tests/reporting/test_diagnosis.py checks it over made-up curves), and each threshold is a
constant here, documented in docs/run-folder.md and tested on both sides."""

from __future__ import annotations

import math

EXPLODE_FACTOR = 10.0  # a finite loss above this many times its first value is exploding: diverging
MIN_EPOCHS = 2  # below this the curves are not judged at all: one point has no direction
PATTERN_EPOCHS = 3  # overfitting, underfitting and a plateau are patterns over epochs: a turn needs three points
# Below this many validation images one image weighs more than 1/20 = 5% of the mean val loss, as much as the
# tolerances below: a single hard image could make or unmake any verdict.
MIN_VAL_IMAGES = 20
# A train component loss above this many times its val loss at the last epoch, in a model whose BatchNorm layers
# train, is read as BatchNorm's two modes (docs/run-folder.md): such a gap is not a fitting verdict of its own.
BATCH_NORM_GAP = 2.0


def diagnose(rows: list[dict], rise_tolerance: float = 0.1, overfit_tolerance: float = 0.05,
             underfit_tolerance: float = 0.1, plateau_tolerance: float = 0.01, val_images: int | None = None,
             trains_batch_norm: bool = False) -> dict:
    """What the curves say, checked in this order:

    - diverging: a loss went non-finite, or a train or val loss rose above EXPLODE_FACTOR times its first value
      (a first value above 0): the optimisation blew up. Judged from the first epochs on.
    - too early: fewer than MIN_EPOCHS epochs.
    - too few images: `val_images` (None: not known) is below MIN_VAL_IMAGES.
    - train loss rising: the train loss ended more than `rise_tolerance` (relative) above its minimum: finite,
      but the optimisation is going the wrong way (lr, schedule).
    - overfitting (PATTERN_EPOCHS or more): val loss ended more than `overfit_tolerance` above its minimum while
      the train loss kept falling after that epoch.
    - val loss rising: val loss ended more than `overfit_tolerance` above its minimum (too few epochs to call
      it overfitting, or the train loss did not fall).
    - underfitting (PATTERN_EPOCHS or more): the train loss fell by less than `underfit_tolerance` of its first
      value: the model does not fit even the training data (capacity, lr).
    - plateau: the last third of the epochs (at least 2, after at least one) brought no val loss more than
      `plateau_tolerance` below the best before them.
    - not improving: the val loss did not end more than `plateau_tolerance` below where it started.
    - learning: otherwise (the val loss ended lower than it started).

    With `trains_batch_norm` (the model has BatchNorm layers that train, as every detector and segmenter from
    scratch has), a verdict after MIN_EPOCHS or more adds a note when a train component loss ended above
    BATCH_NORM_GAP times its val loss: train mode normalises by each small batch's statistics, validation by the
    running ones, so the two curves measure different networks.
    """
    verdict = _curves_verdict(rows, rise_tolerance, overfit_tolerance, underfit_tolerance, plateau_tolerance,
                              val_images)
    gap = _batch_norm_gap(rows[-1]) if trains_batch_norm and len(rows) >= MIN_EPOCHS else None
    if gap and verdict["state"] != "diverging":
        verdict["text"] += f"; {gap}"
    return verdict


def _curves_verdict(rows: list[dict], rise_tolerance: float, overfit_tolerance: float, underfit_tolerance: float,
                    plateau_tolerance: float, val_images: int | None) -> dict:
    if not rows:
        return {"state": "not started", "since_epoch": None, "text": "no epoch finished"}
    epochs = [r["epoch"] for r in rows]
    train = [r.get("train/loss", math.nan) for r in rows]
    val = [r.get("val/loss", math.nan) for r in rows]
    bad = [e for e, t, v in zip(epochs, train, val, strict=True) if not (math.isfinite(t) and math.isfinite(v))]
    if bad:
        return _verdict("diverging", bad[0], f"the loss became non-finite at epoch {bad[0]}")
    exploded = _exploding(epochs, train, val)
    if exploded:
        return exploded
    if len(rows) < MIN_EPOCHS:
        return _verdict("too early", None, f"one epoch is too little to judge the curves (val loss {val[0]:.4g}); "
                        f"train for {MIN_EPOCHS} or more")
    if val_images is not None and val_images < MIN_VAL_IMAGES:
        return _verdict("too few images", None, f"{val_images} validation images are too few to judge the curves "
                        f"(each weighs 1/{val_images} of the val loss, over 1/{MIN_VAL_IMAGES}); validate on "
                        f"{MIN_VAL_IMAGES} or more")
    low = _argmin(train)
    if train[-1] > train[low] * (1 + rise_tolerance):
        return _verdict("train loss rising", epochs[low + 1], f"train loss rose from {train[low]:.4g} at epoch "
                        f"{epochs[low]} to {train[-1]:.4g}")
    best = _argmin(val)
    if val[-1] > val[best] * (1 + overfit_tolerance):
        if len(rows) >= PATTERN_EPOCHS and train[-1] < train[best]:
            return _verdict("overfitting", epochs[best + 1], f"val loss is up from {val[best]:.4g} at epoch "
                            f"{epochs[best]} to {val[-1]:.4g} while train loss kept falling")
        return _verdict("val loss rising", epochs[best + 1], f"val loss is up from {val[best]:.4g} at epoch "
                        f"{epochs[best]} to {val[-1]:.4g}")
    if len(train) >= PATTERN_EPOCHS and train[0] - train[-1] < underfit_tolerance * abs(train[0]):
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


def _batch_norm_gap(row: dict) -> str | None:
    """The note on the train components of `row` (an epoch's metrics) above BATCH_NORM_GAP times their val loss."""
    wide = []
    for name, train in row.items():
        component = name.removeprefix("train/")
        val = row.get(f"val/{component}")
        if name.startswith("train/") and component != "loss" and val is not None and 0 < val * BATCH_NORM_GAP < train:
            wide.append(f"{component} {train:.4g} is {train / val:.3g} times val {val:.4g}")
    if not wide:
        return None
    return (f"train loss {', '.join(wide)} at epoch {row['epoch']}: BatchNorm that trains on small batches (as "
            "from scratch) normalises by each batch's statistics in train mode and by its running ones in "
            "validation, so the val curves are the ones to read (docs/run-folder.md)")


def _exploding(epochs: list[int], train: list[float], val: list[float]) -> dict | None:
    """"diverging" since the rise began, if a train or val loss went above EXPLODE_FACTOR times its first value
    (the earlier of the two; a first value of 0 or below gives no scale); else None."""
    found = []
    for name, values in (("train", train), ("val", val)):
        limit = EXPLODE_FACTOR * values[0]
        above = next((i for i, value in enumerate(values) if value > limit), None)
        if values[0] > 0 and above is not None:
            found.append((above, name, values))
    if not found:
        return None
    above, name, values = min(found, key=lambda item: item[0])  # the earliest; train first on a tie
    low = _argmin(values[:above])
    return _verdict("diverging", epochs[low + 1], f"{name} loss rose from {values[low]:.4g} at epoch {epochs[low]} "
                    f"to {values[above]:.4g} at epoch {epochs[above]}, above {EXPLODE_FACTOR:g} times its first "
                    f"value {values[0]:.4g}")


def _quoted(value: float) -> float:
    """`value` as a verdict quotes it (4 significant digits), so that its words compare what the reader sees."""
    return float(f"{value:.4g}")


def _argmin(values: list[float]) -> int:
    return min(range(len(values)), key=values.__getitem__)


def _verdict(state: str, since: int | None, reason: str) -> dict:
    text = state if since is None or state == "diverging" else f"{state} since epoch {since}"
    return {"state": state, "since_epoch": since, "text": f"{text}: {reason}"}

"""How sure a comparison of repeated runs is: a group's mean, standard deviation and Student-t confidence
interval, and a group against a baseline (mean difference, its interval, a paired or Welch t-test, a verdict).
Plain lists of floats in, plain dicts out; every distribution is scipy's.

Intervals of a bounded metric (mAP, mIoU, accuracy ... lie in [0, 1]) are the t interval clipped to the bounds
and flagged as clipped. Why not a bootstrap: with the three seeds a sweep usually has, a bootstrap resamples 10
distinct sets and its percentile interval is far too narrow; the t interval has the right width, and where it
overruns a bound the flag says its normal approximation is off there."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
LEVEL = 1 - CONFIDENCE  # a difference is "real" when its p-value is below this
MIN_RUNS = 3  # averaged runs a side below which a verdict is not called: two seeds say next to nothing
PAIRED, WELCH = "paired t", "Welch t"
IDENTICAL, TOO_FEW = "identical results", "too few runs"
# Metrics that are fractions: detection's mAP/AP/AR, precision, recall, F1; segmentation's mIoU, IoU, Dice, accuracy.
FRACTIONS = ("map", "ap", "ar", "mar", "precision", "recall", "f1", "miou", "iou", "mdice", "dice", "pixel_accuracy",
             "accuracy")


def bounds_of(metric: str) -> tuple[float, float] | None:
    """(0, 1) for a metrics.csv column that is a fraction, None for anything else (losses are unbounded above)."""
    name = metric.rsplit("/", 1)[-1].lower()
    return (0.0, 1.0) if name.startswith(FRACTIONS) or "/iou/" in metric.lower() else None


def describe(values: list[float]) -> dict:
    """n, mean, sample standard deviation and the 95% Student-t interval of the mean (None where n < 2)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci_low": None, "ci_high": None}
    if n == 1:
        return {"n": 1, "mean": values[0], "sd": None, "ci_low": None, "ci_high": None}
    with _quiet():  # identical values (sd 0) make scipy warn; the interval is then the mean itself
        interval = stats.ttest_1samp(values, popmean=0.0).confidence_interval(CONFIDENCE)
    return {"n": n, "mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
            "ci_low": float(interval.low), "ci_high": float(interval.high)}


def clip(low: float | None, high: float | None, bounds: tuple[float, float] | None) -> tuple:
    """(low, high, clipped): the interval cut to `bounds` (None: left as it is) and whether that cut it."""
    if low is None or bounds is None:
        return low, high, False
    clipped_low, clipped_high = max(low, bounds[0]), min(high, bounds[1])
    return clipped_low, clipped_high, (clipped_low, clipped_high) != (low, high)


def versus(values: list[float], baseline: list[float], paired: bool) -> dict:
    """`values` against `baseline`: the difference of the means, its 95% interval and the p-value of a paired
    t-test (the i-th values of both come from the same seed) or of Welch's t-test (unequal variances).
    Fewer than two values (pairs) on a side gives the difference alone."""
    diff = float(np.mean(values) - np.mean(baseline)) if values and baseline else None
    result = {"diff": diff, "diff_ci_low": None, "diff_ci_high": None, "p_value": None, "test": None}
    if min(len(values), len(baseline)) < 2:
        return result
    with _quiet():
        test = stats.ttest_rel(values, baseline) if paired else stats.ttest_ind(values, baseline, equal_var=False)
        interval = test.confidence_interval(CONFIDENCE)
    return result | {"diff_ci_low": float(interval.low), "diff_ci_high": float(interval.high),
                     "p_value": float(test.pvalue), "test": PAIRED if paired else WELCH}


def against_baseline(values: list[float], baseline: list[float], paired: bool, mode: str,
                     bounds: tuple[float, float] | None) -> dict:
    """versus(...) with its verdict, told so that it cannot mislead:

    - both sides hold the same values (seed for seed when paired): "identical results", no test (a t-test of
      two identical samples is 0/0, which scipy reports as p NaN);
    - fewer than two values on a side: "too few runs";
    - fewer than MIN_RUNS on a side: the test is reported but not called: "evidence too thin: ...";
    - else verdict(...). The difference's interval of a metric within `bounds` is clipped to the differences it
      can take (a fraction's: [-1, 1]) and flagged in "diff_ci_clipped"."""
    if values and (values == baseline if paired else sorted(values) == sorted(baseline)):
        return {"diff": 0.0, "diff_ci_low": None, "diff_ci_high": None, "diff_ci_clipped": False, "p_value": None,
                "test": None, "verdict": IDENTICAL}
    result = versus(values, baseline, paired)
    span = None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])
    low, high, clipped = clip(result["diff_ci_low"], result["diff_ci_high"], span)
    result |= {"diff_ci_low": low, "diff_ci_high": high, "diff_ci_clipped": clipped}
    if result["p_value"] is not None and min(len(values), len(baseline)) < MIN_RUNS:
        return result | {"verdict": f"evidence too thin: {len(values)} runs against {len(baseline)}, "
                                    f"{MIN_RUNS} a side needed to call it"}
    return result | {"verdict": verdict(result["diff"], result["p_value"], mode)}


def verdict(diff: float | None, p_value: float | None, mode: str) -> str:
    """better / worse (p below 5%, in the direction `mode` prefers), no clear difference, or too few runs.

    A p-value that is NaN (both sides identical) is no evidence of a difference."""
    if p_value is None or diff is None:
        return TOO_FEW
    if math.isnan(p_value) or p_value >= LEVEL or diff == 0:
        return "no clear difference"
    return "better" if (diff < 0) == (mode == "min") else "worse"


def _quiet():
    return warnings.catch_warnings(action="ignore", category=RuntimeWarning)

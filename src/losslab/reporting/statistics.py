"""How sure a comparison of repeated runs is: a group's mean, standard deviation and Student-t confidence
interval, and a group against a baseline (mean difference, its interval, a paired or Welch t-test, a verdict).
Plain lists of floats in, plain dicts out; every distribution is scipy's."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
LEVEL = 1 - CONFIDENCE  # a difference is "real" when its p-value is below this
PAIRED, WELCH = "paired t", "Welch t"


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


def verdict(diff: float | None, p_value: float | None, mode: str) -> str:
    """better / worse (p below 5%, in the direction `mode` prefers), no clear difference, or too few runs.

    A p-value that is NaN (both sides identical) is no evidence of a difference."""
    if p_value is None or diff is None:
        return "too few runs"
    if math.isnan(p_value) or p_value >= LEVEL or diff == 0:
        return "no clear difference"
    return "better" if (diff < 0) == (mode == "min") else "worse"


def _quiet():
    return warnings.catch_warnings(action="ignore", category=RuntimeWarning)

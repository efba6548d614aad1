"""metrics.csv columns and round trip, best epoch, and the diagnosis read off the curves."""

from __future__ import annotations

import math

import pytest

from losslab.reporting.diagnosis import diagnose
from losslab.reporting.history import best_row, metric_columns, read_metrics, write_metrics


def _rows(train, val):
    return [{"epoch": i + 1, "lr": 0.001, "train/loss": t, "val/loss": v, "time_s": 1.0}
            for i, (t, v) in enumerate(zip(train, val, strict=True))]


def test_columns_are_ordered_as_documented():
    row = {"time_s": 1.0, "val/mask": 0.1, "val/loss": 1.0, "train/classification": 0.3, "epoch": 1,
           "train/loss": 1.2, "lr": 0.1, "val/mAP": 0.5, "val/classification": 0.2, "train/mask": 0.2}
    assert metric_columns([row]) == ["epoch", "lr", "train/loss", "train/classification", "train/mask",
                                     "val/loss", "val/classification", "val/mask", "val/mAP", "time_s"]


def test_metrics_csv_round_trip(tmp_path):
    rows = _rows([3.0, 2.0], [2.5, 2.25])
    write_metrics(tmp_path / "metrics.csv", rows)
    assert read_metrics(tmp_path / "metrics.csv") == rows
    assert not (tmp_path / "metrics.csv.tmp").exists()


def test_best_row_ignores_non_finite_values_and_prefers_the_earliest_tie():
    rows = _rows([3, 2, 1, 1], [2.0, 1.0, math.nan, 1.0])
    assert best_row(rows, "val/loss", "min")["epoch"] == 2
    assert best_row(rows, "val/loss", "max")["epoch"] == 1
    assert best_row([], "val/loss", "min") is None


@pytest.mark.parametrize(
    ("train", "val", "state", "since"),
    [
        ([3.0, 2.0, 1.5, 1.2, 1.0, 0.9], [3.0, 2.1, 1.7, 1.4, 1.2, 1.1], "learning", None),
        ([3.0, 2.0, 1.5, 1.0, 0.7, 0.5], [2.5, 1.8, 1.6, 1.8, 2.0, 2.2], "overfitting", 4),
        ([3.0, 2.0, 1.9, 1.9, 1.9, 1.9], [2.5, 2.0, 2.0, 2.0, 1.999, 2.0], "plateau", 3),
        ([2.0, 1.98, 1.95, 1.93], [2.1, 2.08, 2.06, 2.05], "underfitting", 1),
        # A finite rise (20% above the minimum) is no divergence (issue 29): the train loss is rising.
        ([2.0, 1.2, 1.1, 1.0, 1.1, 1.2], [2.2, 1.8, 1.4, 1.1, 1.3, 1.5], "train loss rising", 5),
        ([3.0, 2.0, 1.0, 5.0, 40.0, 900.0], [2.5, 2.0, 1.5, 6.0, 50.0, 1e3], "diverging", 4),
        ([3.0, 2.0, math.inf], [2.5, 2.0, math.nan], "diverging", 3),
        ([6.5], [6.431], "too early", None),  # was "learning: val loss fell from 6.431 to 6.431"
        ([math.nan], [6.431], "diverging", 1),
    ],
)
def test_diagnosis(train, val, state, since):
    verdict = diagnose(_rows(train, val))
    assert (verdict["state"], verdict["since_epoch"]) == (state, since)
    assert verdict["text"].startswith(state)
    if state == "too early":
        assert verdict["text"] == ("too early: one epoch is too little to judge the curves (val loss 6.431); train "
                                   "for 2 or more")


@pytest.mark.parametrize(
    ("values", "mode", "patience", "min_delta", "stop_after"),
    [
        ([3.0, 2.0, 2.5, 2.4, 2.3], "min", 3, 0.0, 5),  # no new low for 3 epochs
        ([3.0, 2.0, 1.95, 1.92, 1.91], "min", 3, 0.1, 5),  # gains of at most min_delta do not count
        ([3.0, 2.0, 1.95, 1.5], "min", 2, 0.1, None),
        ([0.1, 0.2, 0.2, 0.2], "max", 2, 0.0, 4),
        ([3.0, 3.0], "min", 0, 0.0, 2),
    ],
)
def test_early_stopping_follows_patience_and_min_delta(values, mode, patience, min_delta, stop_after):
    from losslab.training.stopping import EarlyStopping

    stopping = EarlyStopping("val/loss", mode, patience, min_delta)
    rows = [{"epoch": i + 1, "val/loss": v} for i, v in enumerate(values)]
    stops = [len(rows[:n]) for n in range(1, len(rows) + 1) if stopping.should_stop(rows[:n])]
    assert (stops[0] if stops else None) == stop_after


def test_early_stopping_says_how_long_it_waited_in_words():
    from losslab.training.stopping import EarlyStopping

    rows = [{"epoch": 1, "val/loss": 3.0}, {"epoch": 2, "val/loss": 3.5}]
    assert EarlyStopping("val/loss", "min", 1, 0.0).reason(rows).endswith("for 1 epoch (patience 1)")

"""The diagnosis's words follow from the numbers it quotes, whatever the curves: rising, flat, noisy, one epoch
(a property test over made-up curves, with hypothesis); each of its thresholds, on both sides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from losslab.reporting.diagnosis import (
    BATCH_NORM_GAP,
    EXPLODE_FACTOR,
    MIN_EPOCHS,
    MIN_VAL_IMAGES,
    PATTERN_EPOCHS,
    diagnose,
)

STATES = ("diverging", "train loss rising", "overfitting", "val loss rising", "underfitting", "plateau",
          "not improving", "learning", "too early")
# "<verb> from A [at epoch N] to B": what each verb claims about B against A
MOVES = {"fell only": "lower", "fell": "lower", "rose": "higher", "is up": "higher", "did not fall:": "not lower",
         "went": None}
MOVE = re.compile(r"(fell only|fell|rose|is up|did not fall:|went) from (\S+?)(?: at epoch \d+)? to ([^\s,;)]+)")

loss = st.floats(min_value=0.01, max_value=100.0)


@st.composite
def curves(draw) -> tuple[list[float], list[float]]:
    """Train and val curves of 1 to 12 epochs: rising, flat, falling or noisy, each its own way."""
    epochs = draw(st.integers(1, 12))
    shape = draw(st.sampled_from(["rising", "flat", "falling", "noisy"]))
    start, step = draw(loss), draw(st.floats(0.0, 0.5))

    def curve():
        if shape == "noisy":
            return draw(st.lists(loss, min_size=epochs, max_size=epochs))
        sign = {"rising": 1, "flat": 0, "falling": -1}[shape]
        return [max(0.01, start * (1 + sign * step) ** i) for i in range(epochs)]

    return curve(), curve()


def rows(train, val):
    return [{"epoch": i + 1, "train/loss": t, "val/loss": v} for i, (t, v) in enumerate(zip(train, val, strict=True))]


@given(curves())
@example(([2.0, 1.9], [1.942, 2.591]))  # was "learning: val loss fell from 1.942 to 2.591"
@example(([2.0, 1.5, 1.2], [1.749, 1.715, 1.749]))  # was "learning: val loss fell from 1.749 to 1.749"
@example(([2.0, 2.05, 2.1], [3.0, 2.9, 2.8]))  # underfitting with a rising train loss: never "fell only"
@example(([6.5], [6.431]))
def test_the_words_of_a_verdict_follow_from_the_numbers_it_quotes(train_and_val):
    train, val = train_and_val
    verdict = diagnose(rows(train, val))
    state, text = verdict["state"], verdict["text"]
    assert state in STATES and text.startswith(state)
    if len(val) == 1:
        assert state == "too early"
    shown = {f"{value:.4g}" for value in train + val}
    for verb, before, after in MOVE.findall(text):
        assert {before, after} <= shown, text  # the curves' own values
        claim, a, b = MOVES[verb], float(before), float(after)
        assert {"lower": b < a, "higher": b > a, "not lower": b >= a, None: True}[claim], text
    if state == "learning":
        assert val[-1] < val[0] and "fell from" in text
    if state == "not improving":
        assert val[-1] >= val[0] * 0.99


FALLING = [3.0, 2.0, 1.5, 1.2]  # a train loss that keeps falling


@pytest.mark.parametrize(
    ("train", "val", "state", "since"),
    [
        # EXPLODE_FACTOR (10): a loss above 10 times its first value diverges; at 10 times it is a finite rise.
        ([1.0, 0.5, 10.0], [1.0, 0.9, 0.8], "train loss rising", 3),
        ([1.0, 0.5, 10.01], [1.0, 0.9, 0.8], "diverging", 3),
        (FALLING[:3], [1.0, 0.9, 10.0], "overfitting", 3),
        (FALLING[:3], [1.0, 0.9, 10.01], "diverging", 3),
        # rise_tolerance (10%): train loss ending 9% above its minimum is no rise, 11% is.
        ([2.0, 1.0, 1.09], [2.0, 1.5, 1.2], "learning", None),
        ([2.0, 1.0, 1.11], [2.0, 1.5, 1.2], "train loss rising", 3),
        # overfit_tolerance (5%) and PATTERN_EPOCHS (3): a val rise over 5% with train falling is overfitting from
        # the third epoch; with two epochs, or with train loss not falling, it is "val loss rising".
        (FALLING[:3], [2.0, 1.0, 1.04], "learning", None),
        (FALLING[:3], [2.0, 1.0, 1.06], "overfitting", 3),
        (FALLING[:2], [1.0, 1.06], "val loss rising", 2),
        (FALLING[:2], [1.0, 1.04], "not improving", None),
        ([3.0, 2.0, 2.1], [2.0, 1.0, 1.2], "val loss rising", 3),
        # underfit_tolerance (10% of the first train loss, over PATTERN_EPOCHS or more).
        ([2.0, 1.95, 1.81], [2.0, 1.5, 1.2], "underfitting", 1),
        ([2.0, 1.95, 1.79], [2.0, 1.5, 1.2], "learning", None),
        ([2.0, 1.81], [2.0, 1.5], "learning", None),
        # plateau_tolerance (1%): the last 2 epochs' best 0.8% below the best before them is a plateau, 1.1% not.
        (FALLING, [2.0, 1.0, 0.995, 0.992], "plateau", 3),
        (FALLING, [2.0, 1.0, 0.995, 0.989], "learning", None),
        # MIN_EPOCHS (2): one epoch is not judged, two are.
        (FALLING[:1], [2.0], "too early", None),
        (FALLING[:2], [2.0, 1.5], "learning", None),
    ],
)
def test_each_threshold_on_both_sides(train, val, state, since):
    verdict = diagnose(rows(train, val))
    assert (verdict["state"], verdict["since_epoch"]) == (state, since), verdict["text"]


def test_the_thresholds_are_the_documented_ones():
    assert (EXPLODE_FACTOR, MIN_EPOCHS, PATTERN_EPOCHS, MIN_VAL_IMAGES) == (10.0, 2, 3, 20)
    documented = " ".join((Path(__file__).parents[2] / "docs" / "run-folder.md").read_text().split())
    for words in ("above 10 times its first value", "fewer than 2 epochs", "3 or more epochs",
                  "fewer than 20 validation images"):
        assert words in documented, words


def test_an_exploding_loss_says_where_it_rose_from_and_past_what():
    verdict = diagnose(rows([3.0, 2.0, 1.0, 5.0, 40.0, 900.0], [2.5, 2.0, 1.5, 6.0, 50.0, 1e3]))
    assert verdict["text"] == ("diverging: train loss rose from 1 at epoch 3 to 40 at epoch 5, above 10 times its "
                               "first value 3")
    # The val loss exploding first is the one quoted; a first value of 0 gives no scale to explode against.
    assert diagnose(rows(FALLING[:3], [1.0, 12.0, 13.0]))["text"].startswith("diverging: val loss rose from 1 at")
    assert diagnose(rows([0.0, 0.5, 50.0], [2.0, 1.5, 1.2]))["state"] == "train loss rising"


def test_too_few_validation_images_are_said_to_be_too_few_to_judge():
    train, val = FALLING[:3], [2.0, 1.0, 1.5]  # a rise that one hard image among 19 could make
    assert diagnose(rows(train, val), val_images=19) == {
        "state": "too few images", "since_epoch": None,
        "text": "too few images: 19 validation images are too few to judge the curves (each weighs 1/19 of the val "
                "loss, over 1/20); validate on 20 or more"}
    assert diagnose(rows(train, val), val_images=20)["state"] == "overfitting"
    assert diagnose(rows(train, val))["state"] == "overfitting"  # the count unknown: judged
    # Non-finite or exploding losses are judged whatever the count.
    assert diagnose(rows([2.0, float("nan")], [1.0, 1.0]), val_images=6)["state"] == "diverging"


def batch_norm_rows(last_train_mask: float) -> list[dict]:
    """Mask R-CNN from scratch as issue 30 measured it: train mask loss 4-6, val 1.1-1.3."""
    return [{"epoch": 1, "train/loss": 9.0, "train/mask": 6.0, "val/loss": 5.0, "val/mask": 1.3, "val/ref_loss": 0.1},
            {"epoch": 2, "train/loss": 7.0, "train/mask": last_train_mask, "val/loss": 4.0, "val/mask": 1.2,
             "val/ref_loss": 0.1}]


def test_a_train_component_far_above_val_in_a_batch_norm_model_is_explained_at_the_threshold():
    noted = diagnose(batch_norm_rows(4.2), trains_batch_norm=True)
    plain = diagnose(batch_norm_rows(4.2))
    assert noted["state"] == plain["state"] == "learning"
    assert noted["text"] == plain["text"] + "; train loss mask 4.2 is 3.5 times val 1.2 at epoch 2: BatchNorm " \
        "that trains on small batches (as from scratch) normalises by each batch's statistics in train mode and by " \
        "its running ones in validation, so the val curves are the ones to read (docs/run-folder.md)"
    # The threshold, on both sides: 2 times val (2.4) is not above it, just over is.
    assert BATCH_NORM_GAP == 2.0
    assert diagnose(batch_norm_rows(2.4), trains_batch_norm=True)["text"] == plain["text"]
    assert "mask 2.41 is 2.01 times val 1.2" in diagnose(batch_norm_rows(2.41), trains_batch_norm=True)["text"]
    # One epoch is too early for any verdict, the note included.
    assert "BatchNorm" not in diagnose(batch_norm_rows(4.2)[:1], trains_batch_norm=True)["text"]


def test_a_run_from_scratch_records_its_batch_norm_layers_and_one_with_frozen_batch_norm_none(tmp_path):
    from conftest import tiny_config
    from losslab import run

    scratch = run(tiny_config("trainer.max_epochs=1", "eval.every=0", run_dir=tmp_path / "scratch"))
    assert scratch.summary["start"]["batch_norm_layers"] > 0  # resnet18 from scratch: BatchNorm2d everywhere
    frozen = run(tiny_config("trainer.max_epochs=1", "eval.every=0", "model.freeze=backbone",
                             run_dir=tmp_path / "frozen"))
    assert frozen.summary["start"]["batch_norm_layers"] == 0  # FrozenBatchNorm2d: eval and train mode agree

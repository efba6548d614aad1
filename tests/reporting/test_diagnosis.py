"""The diagnosis's words follow from the numbers it quotes, whatever the curves: rising, flat, noisy, one epoch
(a property test over made-up curves, with hypothesis)."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from losslab.reporting.diagnosis import diagnose

STATES = ("diverging", "overfitting", "underfitting", "plateau", "not improving", "learning", "too early")
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

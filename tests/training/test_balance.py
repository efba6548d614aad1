"""loss.balance=initial: each swapped component re-weighted before training so that its gradient norm at the
features, on the probe batch, is loss=default's; explicit weights win; the weights are in summary.json."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config
from losslab import run
from losslab.config.validation import validate
from losslab.errors import LosslabError
from losslab.training import session
from losslab.training.balance import balanced_weights, probe_norms
from losslab.training.builders import build_data, build_model
from losslab.training.grad_shares import draw_probe

CPU = torch.device("cpu")


def calibrated(*overrides: str):
    """A tiny Faster R-CNN of `overrides`, its probe batch, its loss builder, and the balanced weights."""
    plan = validate(tiny_config(*overrides))
    torch.manual_seed(plan.seed)
    data = build_data(plan)
    model = build_model(plan, num_classes=len(data.classes))
    probe = draw_probe(data.train, 2, plan.seed, CPU)

    def build(choices, weights):
        return plan.task.build_losses(plan.model, choices, weights, None, len(data.classes))

    weights = balanced_weights(model, probe, build, plan.loss_choices, plan.loss_weights, plan.explicit_weights)
    return plan, model, probe, build, weights


def test_balance_makes_a_swapped_components_norm_that_of_the_default_loss():
    plan, model, probe, build, weights = calibrated("loss/box=giou")
    default = probe_norms(model, build({}, plan.loss_weights), probe)
    before = probe_norms(model, build(plan.loss_choices, plan.loss_weights), probe)
    after = probe_norms(model, build(plan.loss_choices, weights), probe)
    assert before["box_regression"] != pytest.approx(default["box_regression"], rel=0.01)  # GIoU differs
    assert weights["box_regression"] != 1.0
    for name in ("classification", "box_regression", "objectness", "rpn_box_regression"):
        assert after[name] == pytest.approx(default[name], rel=1e-4, abs=1e-12)
    assert set(weights) == set(default)  # the model's components only: no mask or centerness for Faster R-CNN
    assert {name: weight for name, weight in weights.items() if name != "box_regression"} == \
        {name: plan.loss_weights[name] for name in weights if name != "box_regression"}


def test_a_user_loss_is_balanced_like_a_built_in_one(user_folder):
    # Cross-entropy times 3: three times the default's gradient, so a weight of exactly 1/3 matches it.
    plan, model, probe, build, weights = calibrated("loss/cls=custom", "loss.cls._target_=userloss.scaled_ce",
                                                    "+loss.cls.scale=3.0")
    assert weights["classification"] == pytest.approx(1 / 3, rel=1e-6)
    assert probe_norms(model, build(plan.loss_choices, weights), probe)["classification"] == \
        pytest.approx(probe_norms(model, build({}, plan.loss_weights), probe)["classification"], rel=1e-4)


def test_an_explicit_weight_wins_over_the_balance():
    plan, _, _, _, weights = calibrated("loss/box=giou", "loss.weights.box_regression=2.0")
    assert plan.explicit_weights == ("box_regression",)
    assert weights["box_regression"] == 2.0


def test_an_unknown_balance_is_refused_by_key():
    with pytest.raises(LosslabError, match=r"loss.balance=always: expected none or initial"):
        validate(tiny_config("loss.balance=always"))


def test_a_balanced_run_writes_its_weights_to_summary_json(tmp_path):
    result = run(tiny_config("loss/box=giou", "loss.balance=initial", "eval.every=0", "trainer.grad_shares=false",
                             run_dir=tmp_path / "balanced"))
    summary = json.loads((result.run_dir / "summary.json").read_text())
    _, _, _, _, expected = calibrated("loss/box=giou")
    assert summary["balanced_weights"]["0"] == pytest.approx(expected)
    assert summary["balanced_weights"]["0"]["box_regression"] != 1.0


def test_a_resumed_balanced_run_keeps_the_weights_its_run_chose(tmp_path, monkeypatch):
    first = run(tiny_config("loss/box=giou", "loss.balance=initial", "eval.every=0", "trainer.grad_shares=false",
                            "trainer.keep_resume_state=true", run_dir=tmp_path / "balanced"))
    chosen = json.loads((first.run_dir / "summary.json").read_text())["balanced_weights"]

    def measured_again(*args, **kwargs):
        raise AssertionError("a resumed run measured its weights again")

    monkeypatch.setattr(session, "balance_every_phase", measured_again)
    resumed = run(tiny_config(f"resume={first.run_dir}"), overrides=[f"resume={first.run_dir}", "trainer.max_epochs=2"])
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert json.loads((first.run_dir / "summary.json").read_text())["balanced_weights"] == chosen

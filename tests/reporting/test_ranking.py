"""Which metric ranks runs: each run's own val/loss only while the runs share their losses, else a common yardstick
(val/mAP when evaluated, else val/ref_loss); the choice is said, and forcing val/loss across losses warns."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import fake_run
from losslab.cli import main as losslab_main
from losslab.commands.train import SweepSummaryCallback
from losslab.config.compose import config_dir
from losslab.reporting.comparability import incomparable
from losslab.reporting.comparison import load_runs
from losslab.reporting.ranking import choose_ranking, loss_differences, own_objective, ranked
from losslab.reporting.sweep import summarize_sweep

FOCAL = {"cls": {"name": "focal", "alpha": 0.25, "gamma": 2.0}, "box": {"name": "default"}}
DEFAULT = {"cls": {"name": "default"}, "box": {"name": "default"}}


def _rows(val_loss, ref_loss, mAP=None):
    """Two epochs; the second holds the best values."""
    return [{"epoch": e, "val/loss": val_loss + d, "val/ref_loss": ref_loss + d,
             **({"val/mAP": mAP - d} if mAP is not None else {})} for e, d in ((1, 0.5), (2, 0.0))]


@pytest.fixture
def loss_sweep(tmp_path):
    """Focal is far below cross-entropy on its own scale, yet worse on the common ones."""
    fake_run(tmp_path / "0", ["loss=focal"], _rows(0.4, 1.5), loss=FOCAL)
    fake_run(tmp_path / "1", ["loss=default"], _rows(1.2, 1.2), loss=DEFAULT)
    return tmp_path


def test_a_sweep_over_losses_ranks_by_the_reference_loss_and_says_why(loss_sweep, caplog):
    with caplog.at_level(logging.WARNING):
        report = summarize_sweep(loss_sweep)
    assert report.ranking.metric == "val/ref_loss" and report.ranking.mode == "min"
    assert [(row["job"], row["value"]) for row in report.jobs] == [("1", 1.2), ("0", 1.5)]
    assert not caplog.records
    with (loss_sweep / "sweep_summary.csv").open() as f:
        written = list(csv.DictReader(f))
    assert [(r["job"], r["rank_by"]) for r in written] == [("1", "val/ref_loss"), ("0", "val/ref_loss")]
    reason = written[0]["rank_reason"]
    assert "differ in loss.cls.name, loss.cls.alpha, loss.cls.gamma" in reason
    assert "val/ref_loss is common to their losses" in reason


def test_a_sweep_over_losses_that_evaluated_ranks_by_map(tmp_path):
    fake_run(tmp_path / "0", ["loss=focal"], _rows(0.4, 1.5, mAP=0.2), loss=FOCAL)
    fake_run(tmp_path / "1", ["loss=default"], _rows(1.2, 1.2, mAP=0.3), loss=DEFAULT)
    report = summarize_sweep(tmp_path)
    assert (report.ranking.metric, report.ranking.mode) == ("val/mAP", "max")
    assert [(row["job"], row["value"]) for row in report.jobs] == [("1", 0.3), ("0", 0.2)]
    assert "every run evaluated it at its kept epoch" in report.ranking.reason


def test_a_sweep_over_the_learning_rate_keeps_trainer_monitor(tmp_path):
    fake_run(tmp_path / "0", ["optimizer.lr=0.001"], _rows(0.9, 1.5), loss=DEFAULT)
    fake_run(tmp_path / "1", ["optimizer.lr=0.01"], _rows(1.2, 1.2), loss=DEFAULT)
    report = summarize_sweep(tmp_path)
    assert report.ranking.metric == "val/loss"
    assert report.ranking.reason == "the selection metric val/loss, which picked each run's kept epoch"
    assert [row["job"] for row in report.jobs] == ["0", "1"]


def test_forcing_val_loss_across_losses_ranks_by_it_with_a_warning(loss_sweep, caplog):
    with caplog.at_level(logging.WARNING):
        report = summarize_sweep(loss_sweep, rank_by="val/loss")
    assert [row["job"] for row in report.jobs] == ["0", "1"] and report.ranking.reason == "sweep.rank_by=val/loss"
    [warning] = caplog.records
    assert "val/loss is each run's own training loss" in warning.message and "different scales" in warning.message


def test_compare_on_mixed_runs_says_its_metric_and_warns_when_forced_to_val_loss(loss_sweep, capsys, caplog):
    assert losslab_main(["compare", str(loss_sweep / "0"), str(loss_sweep / "1"), "--out", str(loss_sweep)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ranked by val/ref_loss at each run's kept epoch: the runs differ in loss.cls.name")
    with (loss_sweep / "comparison.csv").open() as f:
        assert [(r["run"], r["metric"]) for r in csv.DictReader(f)] == [("1", "val/ref_loss"), ("0", "val/ref_loss")]
    assert not caplog.records
    assert losslab_main(["compare", str(loss_sweep), "--metric", "val/loss"]) == 0
    [warning] = caplog.records
    assert warning.levelname == "WARNING" and "val/loss is each run's own training loss" in warning.message
    assert capsys.readouterr().out.startswith("ranked by val/loss at each run's kept epoch: --metric=val/loss")


def test_the_rule_in_plain_values():
    sections = [{"cls": {"name": "default"}, "weights": {"mask": 1.0}},
                {"cls": {"name": "default"}, "weights": {"mask": 2.0}}]
    assert loss_differences(sections) == ["loss.weights.mask"]
    assert loss_differences([DEFAULT, DEFAULT]) == []
    # A monitor that already is comparable stays; so does an explicit choice.
    assert choose_ranking(None, None, "val/mAP50", sections, "val/mAP", "sweep.rank_by").metric == "val/mAP50"
    assert choose_ranking("val/ref_loss", "max", "val/loss", sections, "val/mAP", "--metric").mode == "max"
    assert own_objective("val/loss") and own_objective("train/classification") and own_objective("val/mask")
    assert not own_objective("val/ref_loss") and not own_objective("val/ref_mask") and not own_objective("val/mAP")


def test_every_search_over_loss_settings_optimises_a_common_yardstick():
    presets = list((config_dir() / "hparams_search").glob("*.yaml"))
    searching_losses = 0
    for path in presets:
        preset = yaml.safe_load(path.read_text())
        if any(key.startswith("loss") for key in preset["hydra"]["sweeper"]["params"]):
            searching_losses += 1
            assert not own_objective(preset["trainer"]["monitor"]), path.name
            assert preset["trainer"]["monitor"] != "val/mAP" or preset["eval"]["every"] == 1, path.name
    assert searching_losses >= 1  # hparams_search=focal


def test_an_optuna_search_over_losses_by_their_own_loss_warns_at_its_start(caplog, tmp_path):
    def config(monitor):
        sweeper = {"direction": "minimize", "params": {"loss.cls.gamma": "interval(0.5, 4.0)", "optimizer.lr": "1e-3"}}
        return OmegaConf.create({"trainer": {"monitor": monitor},
                                 "hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": sweeper}})

    with caplog.at_level(logging.WARNING):
        SweepSummaryCallback().on_multirun_start(config("val/mAP"))
        assert not caplog.records
        SweepSummaryCallback().on_multirun_start(config("val/loss"))
    [warning] = caplog.records
    assert "varies loss.cls.gamma but optimises trainer.monitor=val/loss" in warning.message


def test_equal_values_share_a_rank_and_the_next_one_skips():
    rows = [{"run": "a", "best": 0.3}, {"run": "b", "best": 0.5}, {"run": "c", "best": 0.1 + 0.2},
            {"run": "d", "best": None}, {"run": "e", "best": 0.1}, {"run": "f", "best": None}]
    # 0.1 + 0.2 is 0.30000000000000004: the same value, summed otherwise.
    best_first = ranked(rows, "max")
    assert [row["run"] for row in best_first][4:] == ["d", "f"]  # without a value: last, in the order given
    assert {row["run"]: row["rank"] for row in best_first} == {"b": 1, "a": 2, "c": 2, "e": 4, "d": 5, "f": 6}
    assert {row["run"]: row["rank"] for row in ranked(rows, "min")} == {"e": 1, "a": 2, "c": 2, "b": 4, "d": 5, "f": 6}
    assert [row["rank"] for row in ranked([{"best": 1.0}, {"best": 1.0}, {"best": 1.0}], "min")] == [1, 1, 1]


def _measured(path, **changes):
    """Record in a fake run's summary.json what its numbers were measured on (as training writes it)."""
    summary = json.loads((path / "summary.json").read_text())
    basis = {"task": "detection", "data": {"name": "shapes", "num_images": 48}, "split": {"name": "random"},
             "val_images": 12, "reference_loss": "model=retinanet's loss=default", "image_size": [128, 128]}
    (path / "summary.json").write_text(json.dumps(summary | {"measured_on": basis | changes}))


def test_runs_measured_on_other_yardsticks_are_refused_unless_forced_and_then_flagged(tmp_path, capsys):
    from matplotlib.image import imread

    fake_run(tmp_path / "a", ["model=retinanet"], _rows(0.4, 1.5, mAP=0.2), loss=DEFAULT)
    fake_run(tmp_path / "b", ["model=faster_rcnn"], _rows(1.2, 1.2, mAP=0.3), loss=DEFAULT)
    _measured(tmp_path / "a")
    _measured(tmp_path / "b", reference_loss="model=faster_rcnn's loss=default")
    runs = load_runs([tmp_path / "a", tmp_path / "b"])
    # A loss is not comparable across reference losses; mAP is (same task, data, split and val images).
    assert incomparable(runs, "val/ref_loss") == ['reference loss ("model=retinanet\'s loss=default", '
                                                  '"model=faster_rcnn\'s loss=default")']
    assert incomparable(runs, "val/mAP") == []
    out = tmp_path / "cmp"
    assert losslab_main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "NOT COMPARABLE by val/loss: the runs differ in reference loss" in error and "--force" in error
    assert not out.exists()  # refused: nothing written
    assert losslab_main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--force"]) == 0
    assert "WARNING: NOT COMPARABLE by val/loss" in capsys.readouterr().out
    with (out / "comparison.csv").open() as f:
        assert {row["comparable"] for row in csv.DictReader(f)} == {
            "NOT COMPARABLE by val/loss: the runs differ in reference loss (\"model=retinanet's loss=default\", "
            "\"model=faster_rcnn's loss=default\") (ranked as asked)"}
    red = imread(out / "comparison.png")[:40, :, :3]  # the warning's red text across the top
    assert ((red[..., 0] > 0.7) & (red[..., 1] < 0.3) & (red[..., 2] < 0.3)).sum() > 20
    assert losslab_main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                         "--metric", "val/mAP"]) == 0  # a metric they share: no warning
    assert "NOT COMPARABLE" not in capsys.readouterr().out
    _measured(tmp_path / "b", data={"name": "coco", "images": "/data"})
    assert incomparable(load_runs([tmp_path / "a", tmp_path / "b"]), "val/mAP") == [
        'data ({"name": "shapes", "num_images": 48}, {"images": "/data", "name": "coco"})']


def test_a_sweep_of_architectures_by_reference_loss_carries_the_warning(tmp_path):
    fake_run(tmp_path / "0", ["model=retinanet"], _rows(0.4, 1.5), loss=DEFAULT, monitor="val/ref_loss")
    fake_run(tmp_path / "1", ["model=faster_rcnn"], _rows(1.2, 1.2), loss=DEFAULT, monitor="val/ref_loss")
    _measured(tmp_path / "0")
    _measured(tmp_path / "1", reference_loss="model=faster_rcnn's loss=default")
    report = summarize_sweep(tmp_path)
    assert report.ranking.metric == "val/ref_loss" and report.note.startswith("NOT COMPARABLE by val/ref_loss")
    with (tmp_path / "sweep_summary.csv").open() as f:
        assert {row["comparable"] for row in csv.DictReader(f)} == {report.note}

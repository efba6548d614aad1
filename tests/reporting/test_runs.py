"""`losslab compare` and `losslab runs` on finished run folders (made up here, no training)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from conftest import fake_run
from losslab.cli import main as losslab_main
from losslab.errors import LosslabError
from losslab.reporting.comparison import compare_runs, list_runs, load_runs, run_ranking
from losslab.reporting.history import write_metrics
from losslab.reporting.ranking import default_mode
from losslab.reporting.sweep import summarize_sweep
from losslab.training.checkpoints import save_checkpoint


def _resume_state(path, epoch: int, planned: int, weights: int = 10, **extra) -> None:
    """A checkpoints/last.pt as a run writes it every epoch (the resume state), made up."""
    save_checkpoint(path, {"model": {"w": torch.zeros(weights)}, "epoch": epoch, "optimizer": {}, "scheduler": {},
                           "rng": {"torch": torch.zeros(3, dtype=torch.uint8)}, "history": [{"epoch": epoch}],
                           "config": f"trainer:\n  max_epochs: {planned}\n", **extra})


def _fake_run(path, overrides, val_losses, status="completed", cls="default"):
    rows = [{"epoch": i + 1, "train/loss": 2.0, "val/loss": v, "val/ref_loss": v + 1, "val/mAP": 0.1 * i + 0.5 / v}
            for i, v in enumerate(val_losses)]
    fake_run(path, overrides, rows, status, loss={"cls": {"name": cls}})


@pytest.fixture
def sweep(tmp_path):
    _fake_run(tmp_path / "sweep" / "0", ["loss=focal", "trainer.max_epochs=3"], [2.0, 1.5, 1.7], cls="focal")
    _fake_run(tmp_path / "sweep" / "1", ["loss=default", "trainer.max_epochs=3"], [2.0, 1.2, 1.3])
    _fake_run(tmp_path / "sweep" / "2", ["loss=giou", "trainer.max_epochs=3"], [2.5, 1.9, float("nan")],
              status="diverged")
    return tmp_path / "sweep"


def _compare(paths, metric, mode=None):
    runs = load_runs(paths)
    return compare_runs(runs, run_ranking(runs, metric, mode, "--metric"))


def test_a_failed_jobs_error_column_holds_its_one_line_reason(sweep):
    failed = sweep / "3"
    _fake_run(failed, ["loss=dice", "trainer.max_epochs=3"], [3.0], status="failed")
    summary = json.loads((failed / "summary.json").read_text())
    (failed / "summary.json").write_text(json.dumps({**summary, "error": "RuntimeError('shapes differ')\nmore"}))
    refused = sweep / "4"  # refused before its run began: Hydra's files and train.log, no summary.json
    (refused / ".hydra").mkdir(parents=True)
    (refused / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=-1\n")
    (refused / "train.log").write_text("[2026-11-23 10:00:00,000][INFO] starting\n[2026-11-23 10:00:01,000][ERROR] "
                                       "invalid configuration: optimizer.lr=-1.0: expected a positive learning rate.\n")
    silent = sweep / "5"  # killed before it logged anything
    (silent / ".hydra").mkdir(parents=True)
    (silent / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=2\n")
    errors = {row["job"]: (row["status"], row["error"]) for row in summarize_sweep(sweep).jobs}
    assert errors == {"0": ("completed", None), "1": ("completed", None), "2": ("diverged", None),
                      "3": ("failed", "RuntimeError('shapes differ')"),
                      "4": ("failed", "invalid configuration: optimizer.lr=-1.0: expected a positive learning rate."),
                      "5": ("failed", None)}
    with (sweep / "sweep_summary.csv").open() as f:
        assert {row["job"]: row["error"] for row in csv.DictReader(f)}["4"].startswith("invalid configuration")


def test_compare_ranks_the_jobs_of_a_sweep_by_their_value_at_the_kept_epoch(sweep):
    rows = _compare([sweep], "val/loss")
    assert [(r["rank"], r["overrides"], r["value"], r["kept_epoch"]) for r in rows] == [
        (1, "loss=default", 1.2, 2), (2, "loss=focal", 1.5, 2), (3, "loss=giou", 1.9, 2)]
    assert rows[2]["status"] == "diverged"
    assert [r["run"] for r in _compare([sweep / "0", sweep / "2"], "val/loss", mode="max")] == ["2", "0"]


def test_compare_command_writes_table_and_figure_and_prints_the_ranking(sweep, capsys):
    assert losslab_main(["compare", str(sweep), "--metric", "val/ref_loss"]) == 0
    out = capsys.readouterr().out
    assert out.index("loss=default") < out.index("loss=focal") < out.index("loss=giou")
    with (sweep / "comparison.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [row["overrides"] for row in table] == ["loss=default", "loss=focal", "loss=giou"]
    assert float(table[0]["value"]) == pytest.approx(2.2) and table[0]["checkpoint"] == "best.pt"
    assert (sweep / "comparison.png").stat().st_size > 1000


def test_compare_explains_unknown_folders_and_columns(sweep, tmp_path, capsys):
    assert losslab_main(["compare", str(tmp_path / "nothing")]) == 1
    assert "holds no losslab run" in capsys.readouterr().err
    with pytest.raises(LosslabError, match=r"val/mAP90 \(--metric=val/mAP90\) is in no run's metrics.csv; "
                                           r"expected --metric with one of train/loss, val/loss, val/mAP, "
                                           r"val/ref_loss\."):
        _compare([sweep], "val/mAP90")


def test_better_is_lower_for_losses_and_higher_for_detection_metrics():
    assert default_mode("val/loss") == "min" and default_mode("val/ref_classification") == "min"
    assert default_mode("val/mAP") == "max" and default_mode("val/mAR@100") == "max"
    assert default_mode("val/mask_mAP") == "max" and default_mode("val/mAP_small") == "max"
    assert default_mode("val/mIoU") == "max" and default_mode("val/IoU/car") == "max"
    assert default_mode("val/pixel_accuracy") == "max" and default_mode("val/pixel") == "min"


def test_runs_lists_every_run_with_model_loss_and_status(sweep, capsys):
    rows = list_runs(sweep.parent)
    assert len(rows) == 3
    by_dir = {row["run_dir"]: row for row in rows}
    assert by_dir[str(sweep / "0")]["loss"] == "cls=focal"
    assert by_dir[str(sweep / "0")]["model"] == "retinanet (resnet18_fpn)"
    assert by_dir[str(sweep / "2")]["status"] == "diverged"
    assert by_dir[str(sweep / "0")]["start"] == "scratch"
    assert losslab_main(["runs", str(sweep.parent)]) == 0
    assert capsys.readouterr().out.count("retinanet") == 3
    assert losslab_main(["runs", str(sweep / "missing")]) == 1


def test_sweep_summary_ranks_jobs_by_any_logged_column_at_the_epoch_each_keeps(sweep):
    by_loss = summarize_sweep(sweep, "val/loss").jobs
    assert [(r["rank"], r["job"], r["value"], r["kept_epoch"]) for r in by_loss] == [
        (1, "1", 1.2, 2), (2, "0", 1.5, 2), (3, "2", 1.9, 2)]
    # mAP: 0.1 * (epoch - 1) + 0.5 / val_loss. Job 1's best mAP is at epoch 3, but its best.pt holds epoch 2
    # (picked by its trainer.monitor, val/loss): the ranking takes epoch 2's, what evaluating best.pt gives.
    by_map = summarize_sweep(sweep, "val/mAP").jobs
    assert [r["job"] for r in by_map] == ["1", "0", "2"]
    assert by_map[0]["value"] == pytest.approx(0.1 + 0.5 / 1.2) and by_map[0]["kept_epoch"] == 2
    assert by_map[2]["value"] == pytest.approx(0.1 + 0.5 / 1.9)
    with (sweep / "sweep_summary.csv").open() as f:
        written = list(csv.DictReader(f))
    assert [(r["rank"], r["job"], r["rank_by"]) for r in written] == [("1", "1", "val/mAP"), ("2", "0", "val/mAP"),
                                                                      ("3", "2", "val/mAP")]
    assert {r["rank_reason"] for r in written} == {"sweep.rank_by=val/mAP"}
    assert float(written[0]["val_loss"]) == 1.2 and written[2]["status"] == "diverged"
    assert {(r["kept_epoch"], r["checkpoint"], r["comparable"]) for r in written} == {("2", "best.pt", "yes")}
    assert [r["job"] for r in summarize_sweep(sweep, "val/loss", mode="max").jobs] == ["2", "0", "1"]
    assert not (sweep / "sweep_stats.csv").exists()  # no job repeats another



def test_runs_lists_killed_and_running_runs_with_their_epochs_and_sizes_newest_first(tmp_path):
    import os

    from losslab.run_lock import claim, release

    root = tmp_path / "outputs"
    fake_run(root / "finished", [], [{"epoch": 1, "val/loss": 2.0}, {"epoch": 2, "val/loss": 1.5}],
             loss={"cls": {"name": "focal"}})
    (root / "finished" / "checkpoints").mkdir()
    (root / "finished" / "checkpoints" / "best.pt").write_bytes(b"w" * 3_000_000)
    os.link(root / "finished" / "checkpoints" / "best.pt", root / "finished" / "checkpoints" / "last.pt")
    for name in ("killed", "running"):  # metrics.csv and last.pt, no summary.json
        (root / name / ".hydra").mkdir(parents=True)
        (root / name / ".hydra" / "config.yaml").write_text("model:\n  arch: faster_rcnn\n  backbone: resnet18_fpn\n")
        write_metrics(root / name / "metrics.csv", [{"epoch": 1, "val/loss": 3.0}, {"epoch": 2, "val/loss": 2.5}])
        _resume_state(root / name / "checkpoints" / "last.pt", epoch=2, planned=3, weights=250_000)  # 1 MB
    # The same minute, seconds apart: newest first by the real time, not by the minute's text.
    for age, name in enumerate(["running", "finished", "killed"]):
        for path in (root / name).rglob("*"):
            os.utime(path, (1_800_000_000 - 5 * age, 1_800_000_000 - 5 * age))
    claim(root / "running")  # this process plays the run still training there
    try:
        rows = list_runs(root)
    finally:
        release(root / "running")
    assert [row["run_dir"].rsplit("/", 1)[-1] for row in rows] == ["running", "finished", "killed"]
    by_name = {row["run_dir"].rsplit("/", 1)[-1]: row for row in rows}
    assert (by_name["killed"]["status"], by_name["killed"]["epochs_run"], by_name["killed"]["resumable"]) == (
        "killed", 2, "yes")
    assert by_name["killed"]["best_val_loss"] == 2.5 and by_name["killed"]["model"] == "faster_rcnn (resnet18_fpn)"
    assert by_name["running"]["status"] == "running"
    assert by_name["finished"]["status"] == "completed" and by_name["finished"]["size"] == "3 MB"  # one file, 2 names
    assert by_name["killed"]["size"] == "1 MB"


class _Shell:
    """A pickled object that would run a command when unpickled."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def test_runs_says_resumable_only_for_a_whole_resume_state_and_finish_for_a_run_killed_after_its_last_epoch(
        tmp_path, capsys):
    root = tmp_path / "outputs"
    whole = root / "whole" / "checkpoints" / "last.pt"
    _resume_state(whole, epoch=2, planned=3)
    _resume_state(root / "at_its_end" / "checkpoints" / "last.pt", epoch=3, planned=3)
    _resume_state(root / "interrupted_at_its_end" / "checkpoints" / "last.pt", epoch=3, planned=3)
    (root / "interrupted_at_its_end" / "summary.json").write_text(json.dumps(
        {"status": "interrupted", "epochs_run": 3, "resumable": True}))
    _resume_state(root / "extendable" / "checkpoints" / "last.pt", epoch=3, planned=3)
    (root / "extendable" / "summary.json").write_text(json.dumps(
        {"status": "completed", "epochs_run": 3, "resumable": True}))  # trainer.keep_resume_state=true
    save_checkpoint(root / "weights" / "checkpoints" / "last.pt", {"model": {}, "epoch": 3, "config": "{}"})
    (root / "garbage" / "checkpoints").mkdir(parents=True)
    (root / "garbage" / "checkpoints" / "last.pt").write_bytes(b"r" * 1000)
    (root / "cut_short" / "checkpoints").mkdir(parents=True)
    (root / "cut_short" / "checkpoints" / "last.pt").write_bytes(whole.read_bytes()[:-200])
    ran = tmp_path / "ran"
    _resume_state(root / "crafted" / "checkpoints" / "last.pt", epoch=2, planned=3, hook=_Shell(f"touch {ran}"))
    rows = list_runs(root)
    assert {row["run_dir"].rsplit("/", 1)[-1]: row["resumable"] for row in rows} == {
        "whole": "yes", "at_its_end": "finish", "interrupted_at_its_end": "finish", "extendable": "yes",
        "weights": "no", "garbage": "no", "cut_short": "no", "crafted": "no"}
    assert not ran.exists()  # read, never run: resume refuses it (weights_only), and so does the listing
    assert losslab_main(["runs", str(root)]) == 0
    assert "finish" in capsys.readouterr().out


def test_runs_shows_the_weights_loss_balance_chose(sweep):
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    (sweep / "0" / "summary.json").write_text(json.dumps(summary | {"balanced_weights": {"0": {"cls": 0.25}}}))
    by_dir = {row["run_dir"]: row for row in list_runs(sweep.parent)}
    assert by_dir[str(sweep / "0")]["loss"] == "cls=focal (balanced: cls 0.25)"
    assert by_dir[str(sweep / "1")]["loss"] == "default"

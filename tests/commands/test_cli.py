"""The `train` console command as a user runs it: a single run and a sweep with a failing job; and the installed
`train` and `losslab` scripts, each once, as a shell runs them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from conftest import TINY
from in_process import train


def _train(*args, cwd, multirun=False):
    flags = ["-m"] if multirun else []  # Hydra's flags go before the overrides
    result = train(*flags, *TINY, *args, cwd=cwd)
    return result, result.stdout + result.stderr


def test_train_writes_a_hydra_run_folder(tmp_path):
    result, output = _train("model=retinanet", "loss=focal", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, output
    run_dir = tmp_path / "run"
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "metrics.csv", "loss_curves.png",
                 "summary.json", "split.json", "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    assert "epoch 1/1" in output and "completed after 1 epoch |" in output  # not "1 epochs"
    assert "3 classes" in output and "too early: one epoch is too little to judge" in output
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert (run_dir / "train.log").read_text().count("epoch 1/1") == 1  # Hydra's log file gets the lines too


def _csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_a_sweep_with_repeated_seeds_is_ranked_grouped_and_tested_even_when_jobs_fail(tmp_path):
    sweep = tmp_path / "sweep"
    # split.val=0 leaves the val split empty: those jobs fail, the others still run.
    # eval.every=0: the selection metric is val/ref_loss, the same scale for both losses.
    result, output = _train("loss=default,focal", "split.val=0.25,0.0", "trainer.seed=0,1", "trainer.checkpoints=false",
                            "eval.every=0", f"hydra.sweep.dir={sweep}", cwd=tmp_path, multirun=True)
    assert result.returncode == 0, output
    rows = _csv(sweep / "sweep_summary.csv")
    assert sorted(int(row["job"]) for row in rows) == list(range(8))
    assert [row["rank"] for row in rows] == [str(rank) for rank in range(1, 9)]
    assert {row["status"] for row in rows[:4]} == {"completed"} and {row["status"] for row in rows[4:]} == {"failed"}
    # Ranked by the selection metric, the reference loss, and the summary says why.
    assert {row["rank_by"] for row in rows} == {"val/ref_loss"}
    assert "ranked by val/ref_loss at each job's kept epoch: the selection metric val/ref_loss" in output
    by_overrides = {row["overrides"]: row for row in rows}
    completed = by_overrides["loss=default split.val=0.25 trainer.seed=0"]
    assert completed["val_ref_loss"] == completed["val_loss"]  # loss=default is its own reference
    focal = by_overrides["loss=focal split.val=0.25 trainer.seed=0"]
    assert float(focal["val_ref_loss"]) != float(focal["val_loss"])
    assert "split.val" in output  # the failing jobs' reason is in the log

    # Seeds vary the training, never the split.
    jobs = {row["overrides"]: sweep / row["job"] for row in rows}
    seed0, seed1 = jobs["loss=focal split.val=0.25 trainer.seed=0"], jobs["loss=focal split.val=0.25 trainer.seed=1"]
    assert (seed0 / "split.json").read_text() == (seed1 / "split.json").read_text()
    assert _csv(seed0 / "metrics.csv")[0]["val/loss"] != _csv(seed1 / "metrics.csv")[0]["val/loss"]

    def best_ref(loss):
        return [min(float(r["val/ref_loss"]) for r in _csv(jobs[f"loss={loss} split.val=0.25 trainer.seed={seed}"]
                                                           / "metrics.csv")) for seed in (0, 1)]

    groups = {row["group"]: row for row in _csv(sweep / "sweep_stats.csv")}
    base, other = groups["loss=default split.val=0.25"], groups["loss=focal split.val=0.25"]
    assert (base["baseline"], base["n"], base["repeats"]) == ("yes", "2", "0 1")
    assert float(base["mean"]) == pytest.approx(sum(best_ref("default")) / 2)
    assert (other["test"], other["n"]) == ("paired t", "2")
    assert float(other["p_value"]) == pytest.approx(stats.ttest_rel(best_ref("focal"), best_ref("default")).pvalue)
    failed = groups["loss=focal split.val=0.0"]
    assert (failed["jobs"], failed["n"], failed["statuses"]) == ("2", "0", "failed 2")
    assert failed["verdict"] == "too few runs" and int(failed["rank"]) > 2
    # The console table, best group first (the lower mean reference loss), with the verdicts.
    table = output[output.index("rank  group"):]
    first, second = sorted((base, other), key=lambda row: int(row["rank"]))
    assert float(first["mean"]) <= float(second["mean"]) and table.index(first["group"]) < table.index(second["group"])
    assert "baseline" in table and other["verdict"] in table and "too few runs" in table
    for name in ("sweep_curves.png", "sweep_stats.png"):
        assert (sweep / name).stat().st_size > 1000, name
    # A failed job's error column holds its one-line reason.
    assert all(row["error"].startswith("split: split.val=0.0") for row in rows if row["status"] == "failed")
    assert "4 of the sweep's 8 jobs failed" in output


def test_a_sweep_whose_every_job_failed_exits_1_and_says_how_many(tmp_path):
    sweep = tmp_path / "sweep"
    # min_size above max_size: each job's config is refused, quickly, before it trains.
    result, output = _train("model.min_size=2000,3000", f"hydra.sweep.dir={sweep}", cwd=tmp_path, multirun=True)
    assert result.returncode == 1, output
    assert "the sweep failed: all 2 of its jobs failed" in output and "Traceback" not in output
    assert [row["status"] for row in _csv(sweep / "sweep_summary.csv")] == ["failed", "failed"]


SCRIPTS = Path(sys.executable).parent  # where the installed console scripts are


@pytest.mark.parametrize(("argv", "code", "said"), [
    (["train", "model=nope"], 1, "faster_rcnn"),  # the choices, no traceback
    (["losslab", "--help"], 0, "show-augment"),
    (["losslab", "plot", "nowhere"], 1, "losslab plot: error: nowhere/metrics.csv does not exist"),
])
def test_the_installed_scripts_end_with_their_commands_exit_code_and_message(tmp_path, argv, code, said):
    ended = subprocess.run([str(SCRIPTS / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=tmp_path,
                           timeout=300)
    output = ended.stdout + ended.stderr
    assert ended.returncode == code and said in output and "Traceback" not in output, output
    assert not list(tmp_path.iterdir())  # a refused command writes nothing

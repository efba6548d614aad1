"""The `train` console command as a user runs it: a single run and a sweep with a failing job."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from conftest import TINY


def _train(*args, cwd, multirun=False):
    flags = ["-m"] if multirun else []  # Hydra's flags go before the overrides
    result = subprocess.run([sys.executable, "-m", "losslab", *flags, *TINY, *args], capture_output=True,
                            text=True, cwd=cwd, timeout=300)
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


def test_sweep_summarises_every_job_even_when_one_fails(tmp_path):
    sweep = tmp_path / "sweep"
    # optimizer.lr=-1 is refused before the run begins (no summary.json): those jobs fail, the others still run.
    result, output = _train("loss=focal,default", "optimizer.lr=0.0005,-1", "trainer.checkpoints=false",
                            f"hydra.sweep.dir={sweep}", cwd=tmp_path, multirun=True)
    assert result.returncode == 0, output
    with (sweep / "sweep_summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    by_overrides = {row["overrides"]: row for row in rows}
    assert by_overrides["loss=focal optimizer.lr=0.0005"]["status"] == "completed"
    refused = by_overrides["loss=default optimizer.lr=-1"]
    assert refused["status"] == "failed"
    assert refused["error"] == "invalid configuration: optimizer.lr=-1.0: expected a positive learning rate."
    assert sorted(row["job"] for row in rows) == ["0", "1", "2", "3"]
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4"]
    assert {row["status"] for row in rows[2:]} == {"failed"}  # jobs without a val/loss rank last
    completed = by_overrides["loss=default optimizer.lr=0.0005"]
    assert float(completed["best_val_loss"]) > 0 and completed["epochs_run"] == "1"
    assert completed["val_ref_loss"] == completed["best_val_loss"]  # loss=default is its own reference
    focal = by_overrides["loss=focal optimizer.lr=0.0005"]
    assert float(focal["val_ref_loss"]) != float(focal["best_val_loss"])
    assert (sweep / "sweep_curves.png").stat().st_size > 1000
    assert "optimizer.lr=-1.0: expected a positive learning rate" in output  # and in the log

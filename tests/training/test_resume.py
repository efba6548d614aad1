"""Crash safety: a run killed with SIGKILL at any moment resumes to the same result, and bad
checkpoints or resume requests are refused clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY, tiny_config
from losslab import run
from losslab.errors import LosslabError
from losslab.reporting.history import read_metrics

THREE_EPOCHS = [*TINY, "trainer.max_epochs=3", "model=retinanet"]


def _without_time(rows):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    run_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "losslab", *THREE_EPOCHS, f"run_dir={run_dir}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(read_metrics(run_dir / "metrics.csv")) < 3

    resumed = subprocess.run([sys.executable, "-m", "losslab", f"resume={run_dir}"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]

    uninterrupted = run(tiny_config("trainer.max_epochs=3", "model=retinanet", run_dir=tmp_path / "straight"))
    expected = _without_time(uninterrupted.history)
    assert [row.keys() for row in _without_time(rows)] == [row.keys() for row in expected]
    for resumed_row, straight_row in zip(_without_time(rows), expected, strict=True):
        assert resumed_row == pytest.approx(straight_row, rel=1e-5)  # approx compares flat dicts only
    assert (run_dir / ".hydra" / "config.yaml").read_text().count("max_epochs: 3") == 1  # the run's own config kept


def test_resume_refuses_what_would_change_the_run_and_a_corrupt_checkpoint(tmp_path):
    result = run(tiny_config("model=retinanet", "trainer.max_epochs=1", run_dir=tmp_path))
    before = (tmp_path / "metrics.csv").read_bytes()
    with pytest.raises(LosslabError, match="already finished epoch 1 of trainer.max_epochs=1"):
        run(tiny_config(f"resume={tmp_path}"))
    with pytest.raises(LosslabError, match="loss=focal would change what it trains"):
        run(tiny_config(f"resume={tmp_path}"), overrides=["loss=focal"])
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LosslabError, match="could not be read as a losslab checkpoint"):
        run(tiny_config(f"resume={tmp_path}"), overrides=["trainer.max_epochs=2"])
    with pytest.raises(LosslabError, match="no checkpoints/last.pt"):
        run(tiny_config(f"resume={tmp_path / 'nowhere'}"))
    assert (tmp_path / "metrics.csv").read_bytes() == before
    assert result.status == "completed"


def test_resume_extends_a_finished_run(tmp_path):
    run(tiny_config("model=retinanet", "trainer.max_epochs=1", "scheduler=none", run_dir=tmp_path))
    extended = run(tiny_config(f"resume={tmp_path}"), overrides=[f"resume={tmp_path}", "trainer.max_epochs=2"])
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1, 2]
    assert extended.summary["epochs_run"] == 2


def test_ctrl_c_leaves_a_consistent_checkpoint_and_an_interrupted_summary(tmp_path):
    import json

    from losslab.modeling.weights import read_checkpoint

    process = subprocess.Popen([sys.executable, "-m", "losslab", *THREE_EPOCHS, f"run_dir={tmp_path}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "checkpoints" / "last.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "Traceback" not in output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "resume=" in summary["error"]
    state = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == summary["epochs_run"] == len(read_metrics(tmp_path / "metrics.csv"))


def test_a_run_from_before_the_start_keys_resumes_with_their_defaults(tmp_path):
    from omegaconf import OmegaConf

    from losslab.training.resume import resumed_config

    stored = OmegaConf.to_container(tiny_config("trainer.max_epochs=2"))
    for key in ("variant", "weights", "download", "freeze"):  # keys added to the model section since
        del stored["model"][key]
    cfg = resumed_config({"config": OmegaConf.to_yaml(OmegaConf.create(stored)), "epoch": 1}, [], tmp_path)
    assert (cfg.model.variant, cfg.model.weights, cfg.model.download, list(cfg.model.freeze)) == ("v1", None, True, [])

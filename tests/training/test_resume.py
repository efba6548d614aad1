"""Crash safety: a run killed with SIGKILL at any moment resumes to the same result, and bad
checkpoints or resume requests are refused clearly."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, tiny_config
from in_process import train
from losslab import run
from losslab.errors import LosslabError
from losslab.modeling.weights import read_checkpoint
from losslab.reporting.history import read_metrics
from losslab.run_lock import owner
from losslab.training.checkpoints import RESUME_KEYS, save_checkpoint

THREE_EPOCHS = [*TINY, "trainer.max_epochs=3", "model=retinanet"]
_script = importlib.util.spec_from_file_location(
    "kill_resume_check", Path(__file__).resolve().parents[2] / "scripts" / "kill_resume_check.py")
kill_check = importlib.util.module_from_spec(_script)
_script.loader.exec_module(kill_check)


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
    assert owner(run_dir) == process.pid  # the run owns its folder
    time.sleep(0.3)  # into the second epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert owner(run_dir) is None
    saved = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert set(RESUME_KEYS) <= set(saved)  # while a run can go on, last.pt is its full resume state
    # metrics.csv comes after last.pt (it may not be there yet) and never holds an epoch last.pt lacks.
    written = read_metrics(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else []
    assert len(written) <= saved["epoch"] < 3
    logged = [int(line.split("epoch ")[1].split("/")[0]) for line in (run_dir / "train.log").read_text().splitlines()
              if " epoch " in line and "/3 |" in line]
    assert all(epoch <= saved["epoch"] for epoch in logged)  # never an epoch line whose checkpoint a kill lost
    leftovers = [run_dir / "checkpoints" / "last.pt.tmp", run_dir / "metrics.csv.tmp"]
    for leftover in leftovers:  # what a kill in the middle of a write leaves
        leftover.write_bytes(b"half a file")

    resumed = train(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]

    uninterrupted = run(tiny_config("trainer.max_epochs=3", "model=retinanet", run_dir=tmp_path / "straight"))
    expected = _without_time(uninterrupted.history)
    assert [row.keys() for row in _without_time(rows)] == [row.keys() for row in expected]
    for resumed_row, straight_row in zip(_without_time(rows), expected, strict=True):
        assert resumed_row == pytest.approx(straight_row, rel=1e-5)  # approx compares flat dicts only
    assert (run_dir / ".hydra" / "config.yaml").read_text().count("max_epochs: 3") == 1  # the run's own config kept
    assert (run_dir / ".hydra" / "resume" / "overrides.yaml").read_text() == f"- resume={run_dir}\n"
    assert not any(leftover.exists() for leftover in leftovers)


def _when(condition, process, timeout=600) -> float:
    """The moment `condition()` came true while `process` ran."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended or hung"
        time.sleep(0.02)
    return time.monotonic()


def test_a_run_killed_at_a_random_moment_on_a_busy_cpu_loses_no_finished_epoch(tmp_path):
    """An epoch is finished once its checkpoint is on disk, and only then is it logged or in metrics.csv: a kill
    at any moment, while another process keeps a core busy, loses no epoch the run said it finished, and the
    resume names the epoch it continues after (scripts/kill_resume_check.py repeats this with 20 kills)."""
    run_dir = tmp_path / "killed"
    fraction = random.random()
    log = run_dir / "train.log"
    with kill_check.busy_cpu():
        process = kill_check.start_run(run_dir)
        try:
            set_up = _when(lambda: log.is_file() and "run folder" in log.read_text(), process)
            first = _when(lambda: kill_check.logged_epochs(run_dir) == [1], process)
            time.sleep(fraction * (first - set_up))  # somewhere in epoch 2, its files included
        finally:
            killed = kill_check.kill(process)
        assert killed, "the run ended before it was killed"
        problems = kill_check.check_kill(run_dir, _resume_in_process)
    assert problems == [], f"killed {fraction:.2f} of epoch 1's time after epoch 1 was logged"


def test_the_kill_check_finds_a_logged_epoch_that_the_checkpoint_lacks(tmp_path):
    """What the old background writer did on a busy machine: epoch 2 logged while last.pt still held epoch 1."""
    (tmp_path / "train.log").write_text("[2026-12-01 10:00:00,000][INFO] epoch 1/3 | train 3.0\n"
                                       "[2026-12-01 10:00:09,000][INFO] epoch 2/3 | train 2.9\n")
    save_checkpoint(tmp_path / "checkpoints" / "last.pt", {"epoch": 1, "model": {}})
    problems = kill_check.check_kill(tmp_path, lambda run_dir: (0, "resuming after epoch 1: metrics.csv keeps ..."))
    assert problems[0] == "epoch 2 was logged but the checkpoint holds epoch 1"
    assert kill_check.check_kill(tmp_path, lambda run_dir: (0, "resuming after epoch 2"))[1].startswith(
        "resume did not say it resumes after epoch 1")


def _resume_in_process(run_dir):
    resumed = train(f"resume={run_dir}", cwd=run_dir.parent)
    return resumed.returncode, resumed.stdout + resumed.stderr


def test_resume_refuses_what_would_change_the_run_and_a_corrupt_checkpoint(tmp_path):
    result = run(tiny_config("model=retinanet", "trainer.max_epochs=1", "trainer.keep_resume_state=true",
                             run_dir=tmp_path))
    before = (tmp_path / "metrics.csv").read_bytes()
    with pytest.raises(LosslabError, match="already finished epoch 1 of trainer.max_epochs=1"):
        run(tiny_config(f"resume={tmp_path}"))
    with pytest.raises(LosslabError, match="loss=focal would change what it trains"):
        run(tiny_config(f"resume={tmp_path}"), overrides=["loss=focal"])
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LosslabError, match="could not be read as a losslab checkpoint"):
        run(tiny_config(f"resume={tmp_path}"), overrides=["trainer.max_epochs=2"])
    with pytest.raises(LosslabError, match="no such folder"):
        run(tiny_config(f"resume={tmp_path / 'nowhere'}"))
    assert (tmp_path / "metrics.csv").read_bytes() == before
    assert result.status == "completed"


@pytest.fixture(scope="module")
def extendable(module_tmp_path):
    """A finished two-epoch run (cosine schedule, lr 5e-4) that kept its resume state."""
    run_dir = module_tmp_path
    run(tiny_config("trainer.max_epochs=2", "eval.every=0", "trainer.keep_resume_state=true", run_dir=run_dir))
    return run_dir


@pytest.mark.parametrize(("on_extend", "lr"), [
    ("last_lr", 5e-4 * (1 + math.cos(math.pi * 1 / 2)) / 2),  # epoch 2's lr, the last of the two-epoch plan
    ("replan", 5e-4 * (1 + math.cos(math.pi * 2 / 3)) / 2)])  # epoch 3 of a cosine planned over three
def test_extending_a_finished_run_trains_at_the_documented_lr(extendable, tmp_path, on_extend, lr):
    run_dir = tmp_path / "run"
    shutil.copytree(extendable, run_dir)
    before = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert before["optimizer"]["param_groups"][0]["lr"] == 0.0  # the two-epoch cosine has ended at 0
    extended = run(tiny_config(f"resume={run_dir}"),
                   overrides=["trainer.max_epochs=3", f"trainer.on_extend={on_extend}"])
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and extended.summary["epochs_run"] == 3
    assert rows[1]["lr"] == pytest.approx(5e-4 / 2)
    assert rows[2]["lr"] == pytest.approx(lr, rel=1e-9)
    after = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert after["epoch"] == 3 and set(RESUME_KEYS) <= set(after)  # keep_resume_state came with the run's config
    parameters = [name for name, value in before["model"].items() if value.is_floating_point()
                  and "running_" not in name]  # BatchNorm statistics move even at lr 0: they do not count
    trained = [name for name in parameters if not torch.equal(before["model"][name], after["model"][name])]
    assert trained == parameters and "roi_heads.box_predictor.cls_score.weight" in trained


def test_ctrl_c_leaves_a_consistent_checkpoint_and_an_interrupted_summary(tmp_path):
    import json

    # As from a terminal: a test process started in the background (`cmd &`) inherits SIGINT ignored.
    process = subprocess.Popen([sys.executable, "-m", "losslab", *THREE_EPOCHS, f"run_dir={tmp_path}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
    state = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert summary["status"] == "interrupted" and summary["resumable"] is True
    assert summary["error"] == (f"stopped by the user (Ctrl-C) after epoch {state['epoch']}; continue with: "
                                f"train resume={tmp_path}")
    assert state["epoch"] == summary["epochs_run"] == len(read_metrics(tmp_path / "metrics.csv"))


def test_a_run_from_before_the_start_keys_resumes_with_their_defaults(tmp_path):
    from omegaconf import OmegaConf

    from losslab.config.run_config import resumed_plan

    stored = OmegaConf.to_container(tiny_config("trainer.max_epochs=2"))
    for key in ("variant", "weights", "download", "freeze"):  # keys added to the model section since
        del stored["model"][key]
    model = resumed_plan({"config": OmegaConf.to_yaml(OmegaConf.create(stored)), "epoch": 1}, [], tmp_path).model
    assert (model["variant"], model["weights"], model["download"], list(model["freeze"])) == ("v1", None, True, [])


def _crafted_resume_state(path, config: str) -> None:
    """A checkpoint that passes the weights-only load, with every key a resume reads, and `config` as its config."""
    save_checkpoint(path / "checkpoints" / "last.pt", {
        "model": {}, "epoch": 1, "config": config, "optimizer": {}, "scheduler": {}, "rng": {}, "history": []})


def test_a_stored_config_imports_nothing_but_what_the_schema_allows(tmp_path):
    """Resume reads the run's config from its checkpoint: a crafted one must not choose what gets imported."""
    stored = OmegaConf.to_yaml(tiny_config())
    crafted = {"optimizer": stored.replace("_target_: torch.optim.AdamW", "_target_: this.Nope"),
               "scheduler": stored.replace("_target_: torch.optim.lr_scheduler.CosineAnnealingLR",
                                           "_target_: this.Nope"),
               "logger": stored.replace("backends: []", "backends: [this.Nope]")}
    assert all(config.count("this.Nope") == 1 for config in crafted.values())
    for section, config in crafted.items():
        _crafted_resume_state(tmp_path / section, config)
    script = ("import json, sys\n"
              "from losslab import compose_config, run\n"
              "from losslab.errors import LosslabError\n"
              "errors = {}\n"
              f"for section in {sorted(crafted)!r}:\n"
              "    try:\n"
              f"        run(compose_config([f'resume={tmp_path}/{{section}}']), overrides=['trainer.max_epochs=2'])\n"
              "    except LosslabError as error:\n"
              "        errors[section] = str(error)\n"
              "print(json.dumps({'errors': errors, 'imported': 'this' in sys.modules}))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["imported"] is False  # `import this` would have printed the Zen of Python
    errors = found["errors"]
    assert "optimizer._target_=this.Nope: expected a class of torch.optim or lion_pytorch" in errors["optimizer"]
    assert "scheduler._target_=this.Nope: expected a class of torch.optim.lr_scheduler" in errors["scheduler"]
    assert "logger.backends has ['this.Nope']: expected names among" in errors["logger"]
    for section in crafted:
        assert not (tmp_path / section / "metrics.csv").exists()


def test_a_checkpoint_without_its_config_is_refused_clearly(tmp_path):
    save_checkpoint(tmp_path / "checkpoints" / "last.pt", {"model": {}, "epoch": 1})
    with pytest.raises(LosslabError, match="has no 'config' \\(the run's own config, which a resume continues with\\)"):
        run(tiny_config(f"resume={tmp_path}"), overrides=["trainer.max_epochs=2"])
    _crafted_resume_state(tmp_path, OmegaConf.to_yaml(tiny_config()))
    state = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    save_checkpoint(tmp_path / "checkpoints" / "last.pt", {k: v for k, v in state.items() if k != "optimizer"})
    with pytest.raises(LosslabError, match="holds the weights of epoch 1 but no resume state \\(optimizer\\)"):
        run(tiny_config(f"resume={tmp_path}"), overrides=["trainer.max_epochs=2"])


class _Killed(BaseException):
    """kill -9: nothing of the run runs after it."""


def test_a_run_killed_after_its_last_epochs_files_is_finished_by_its_resume_without_training(
        tmp_path, monkeypatch, caplog):
    from losslab.reporting.comparison import list_runs
    from losslab.training import run as run_module

    def killed(*args, **kwargs):
        raise _Killed

    # Early stopping decides at epoch 2, the last (the lr falls), as a kill lands before the run ends: its last.pt
    # holds the resume state of its last epoch, and no summary.json is written.
    monkeypatch.setattr(run_module, "finish_run_dir", killed)
    stopping = ["trainer.early_stopping.enabled=true", "trainer.early_stopping.monitor=lr",
                "trainer.early_stopping.mode=max", "trainer.early_stopping.patience=1"]
    with pytest.raises(_Killed):
        run(tiny_config("trainer.max_epochs=2", "eval.every=0", *stopping, run_dir=tmp_path))
    monkeypatch.undo()
    assert not (tmp_path / "summary.json").exists()
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 2
    [listed] = list_runs(tmp_path)
    assert (listed["status"], listed["epochs_run"], listed["resumable"]) == ("killed", 2, "finish")
    metrics = (tmp_path / "metrics.csv").read_bytes()

    with caplog.at_level(logging.INFO):
        finished = run(tiny_config(f"resume={tmp_path}"))
    assert "finishing it without training" in caplog.text and "epoch 3" not in caplog.text
    assert (tmp_path / "metrics.csv").read_bytes() == metrics  # nothing trained
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert finished.status == summary["status"] == "stopped_early"  # as the uninterrupted run ends
    assert (summary["epochs_run"], summary["stopped_epoch"], summary["best_epoch"]) == (2, 2, 1)
    assert summary["resumable"] is False
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.pt"]  # trainer.checkpoints=best
    assert read_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 1
    [listed] = list_runs(tmp_path)
    assert (listed["status"], listed["resumable"]) == ("stopped_early", "no")


def test_a_run_killed_in_its_first_epoch_is_refused_naming_the_half_written_files_it_left(tmp_path):
    from losslab.training.resume import open_checkpoint

    # kill -9 while epoch 1's checkpoint was being written: split.json, the log and a partial last.pt.tmp.
    (tmp_path / "split.json").write_text("{}")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt.tmp").write_bytes(bytes(3_000_000))
    with pytest.raises(LosslabError) as refused:
        open_checkpoint(tmp_path)
    assert str(refused.value) == (
        f"resume={tmp_path}: there is no checkpoints/last.pt: the run stopped before its first epoch ended, so there "
        "is nothing to resume; start it again. It left half-written files (checkpoints/last.pt.tmp: 3 MB), which hold "
        f"nothing to keep: a new run with run_dir={tmp_path} replaces them, or delete the folder.")
    assert (tmp_path / "checkpoints" / "last.pt.tmp").is_file()  # nothing is removed from a folder that is refused
    assert owner(tmp_path) is None

"""Nothing is written for a refused run, whichever key named its folder, and only a finished epoch makes a folder
a run (`train` in this process through losslab.cli.main; issue 33 items 10, 11, 15)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY, tiny_config
from losslab import cli
from losslab.config.validation import validate
from losslab.distributed import SINGLE_PROCESS
from losslab.errors import LosslabError
from losslab.run_lock import holds_run, owner
from losslab.training.checkpoints import save_checkpoint
from losslab.training.run_folder import take_run_dir


def _contents(folder):
    """Every file below `folder` with its bytes and modification time."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _train_here(*args, monkeypatch, capsys):
    """`train ARGS` in this process (losslab.cli.main, the Hydra app): its exit code and console output."""
    monkeypatch.setattr(sys, "argv", ["losslab"])
    handler = signal.getsignal(signal.SIGTERM)  # train's own, for its run; the test process keeps its own
    try:
        code = cli.main(["train", *args])
    except SystemExit as exited:
        code = exited.code
    finally:
        signal.signal(signal.SIGTERM, handler)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def reused_then_finished(module_tmp_path):
    """A folder whose first run failed on its data before its first epoch (split.val=0.0: no val images), then
    trained to its end by a second run given the same hydra.run.dir (`train` in this process)."""
    folder = module_tmp_path / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(module_tmp_path)
        monkeypatch.setattr(sys, "argv", ["losslab"])
        handler = signal.getsignal(signal.SIGTERM)
        codes = []
        for extra in (["split.val=0.0"], []):
            try:
                codes.append(cli.main(["train", *TINY, *extra, f"hydra.run.dir={folder}"]))
            except SystemExit as exited:
                codes.append(exited.code)
            finally:
                signal.signal(signal.SIGTERM, handler)
    assert codes == [1, 0]
    return folder


def test_a_folder_whose_run_failed_before_its_first_epoch_takes_the_next_run(reused_then_finished):
    folder = reused_then_finished
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == 1
    assert "split.val=0.0" not in yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
    log = (folder / "train.log").read_text()
    assert "held a run that never finished an epoch; its summary.json, train.log, .hydra/config.yaml" in log
    assert log.count("epoch 1/1") == 1 and "[ERROR]" not in log  # the failed run's log went with it
    assert yaml.safe_load((folder / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["output_dir"] == str(
        folder)


@pytest.mark.parametrize("key", ["hydra.run.dir", "run_dir", "hydra.sweep.dir"])
def test_a_refused_run_leaves_a_finished_run_byte_identical_whichever_key_names_its_folder(
        reused_then_finished, key, tmp_path, monkeypatch, capsys):
    """Issue 33 item 15: Hydra's .hydra/*.yaml and train.log were rewritten by a refused run named by hydra.run.dir."""
    monkeypatch.chdir(tmp_path)
    folder, flags = reused_then_finished, []
    if key == "hydra.sweep.dir":  # a finished sweep: its job 0 is the finished run
        folder, flags = tmp_path / "sweep", ["-m"]
        shutil.copytree(reused_then_finished, folder / "0")
        (folder / "multirun.yaml").write_text("the finished sweep's multirun.yaml\n")
        (folder / "sweep_summary.csv").write_text("rank,job\n1,0\n")
    before = _contents(folder)
    code, output = _train_here(*flags, *TINY, "model=retinanet", f"{key}={folder}", monkeypatch=monkeypatch,
                               capsys=capsys)
    assert code == 1, output
    held = "already holds the runs of a sweep (jobs 0)" if flags else f"run folder {folder} already holds a run"
    assert held in output and "Traceback" not in output
    assert _contents(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == (["sweep"] if flags else [])


def test_a_refused_config_writes_nothing_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again, where Hydra's scratch folder goes
    for where in ([], ["run_dir=named"]):
        code, output = _train_here(*TINY, "trainer.precision=bogus", *where, monkeypatch=monkeypatch, capsys=capsys)
        assert code == 1 and "trainer.precision=bogus: expected one of" in output, output
        assert list(tmp_path.iterdir()) == [], where  # no outputs/DATE/TIME (.hydra/, train.log), no scratch folder
    # hydra.run.dir= is a folder Hydra itself makes before the run starts: it stays empty.
    code, output = _train_here(*TINY, "trainer.precision=bogus", "hydra.run.dir=named", monkeypatch=monkeypatch,
                               capsys=capsys)
    assert code == 1 and [p.name for p in tmp_path.iterdir()] == ["named"] and not any((tmp_path / "named").iterdir())


def test_a_sweep_job_its_config_check_refuses_is_in_the_summary_with_its_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    code, output = _train_here("-m", *TINY, "optimizer.lr=-1", f"hydra.sweep.dir={sweep}", monkeypatch=monkeypatch,
                               capsys=capsys)
    assert code == 1 and "the sweep failed: all 1 of its jobs failed" in output, output  # no job completed
    assert "optimizer.lr=-1" in yaml.safe_load((sweep / "0" / ".hydra" / "overrides.yaml").read_text())
    with (sweep / "sweep_summary.csv").open() as f:
        (row,) = csv.DictReader(f)
    assert row["status"] == "failed" and row["error"].startswith("invalid configuration: optimizer.lr=-1.0")
    assert sorted(p.name for p in (sweep / "0").iterdir()) == [".hydra", "train.log"]  # no lock, no run files


def test_only_a_finished_epoch_makes_a_folder_a_run(tmp_path):
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt.tmp").write_bytes(b"half")  # killed in epoch 1, writing its checkpoint
    (folder / "metrics.csv").write_text("epoch,train/loss\n")
    (folder / "summary.json").write_text(json.dumps({"status": "failed", "epochs_run": 0}))
    assert not holds_run(folder)
    (folder / "metrics.csv").write_text("epoch,train/loss\n1,2.5\n")  # trainer.checkpoints=none: only the row
    assert holds_run(folder)
    with pytest.raises(LosslabError, match="already holds a run \\(metrics.csv, summary.json, checkpoints\\); "
                                           "choose another run_dir so nothing is overwritten.$"):
        take_run_dir(validate(tiny_config(run_dir=folder)), None, SINGLE_PROCESS)
    (folder / "metrics.csv").unlink()
    save_checkpoint(folder / "checkpoints" / "last.pt", {"model": {}, "epoch": 1, "optimizer": {}, "scheduler": {},
                                                        "rng": {}, "history": [], "config": "{}"})  # a resume state
    with pytest.raises(LosslabError, match=f"or continue that run with resume={folder}"):
        take_run_dir(validate(tiny_config(run_dir=folder)), None, SINGLE_PROCESS)
    assert owner(folder) is None


def test_a_read_only_working_folder_says_so_and_suggests_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    writable = os.access
    # Root may write anywhere, so the read-only check is told: the working folder is on a read-only disk.
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: writable(path, mode, **kw) and not (
        mode == os.W_OK and Path(path) == tmp_path))
    code, output = _train_here(*TINY, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1, output
    assert f"the working folder {tmp_path} is read-only" in output and "run_dir=DIR" in output
    assert "no free run folder" not in output and list(tmp_path.iterdir()) == []


def test_a_folder_holding_files_no_losslab_run_wrote_is_refused_and_kept(tmp_path):
    from losslab import run
    from losslab.errors import LosslabError

    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("summary.json", "train.log", "notes.tmp"):
        (folder / name).write_text(f"the user's {name}")
    with pytest.raises(LosslabError, match=r"holds files of the names a run writes \(summary.json, train.log, "
                                           r"notes.tmp\) that no losslab run left there"):
        run(tiny_config(run_dir=folder))
    assert {path.name: path.read_text() for path in folder.iterdir() if path.name != ".lock"} == {
        name: f"the user's {name}" for name in ("summary.json", "train.log", "notes.tmp")}

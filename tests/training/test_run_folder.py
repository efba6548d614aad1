"""One run owns its folder: nothing is written into a folder that holds another run, is owned by another process
or is no run to resume (not even Hydra's own files), and every stop says what really is there."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import TINY, tiny_config
from in_process import train
from losslab import run
from losslab.config import compose
from losslab.config.validation import validate
from losslab.distributed import SINGLE_PROCESS
from losslab.errors import LosslabError
from losslab.run_lock import claim, holds_run, owner, release
from losslab.training import run_folder
from losslab.training.run_folder import take_run_dir


def _train(*args, cwd):
    """`train ARGS` as a user runs it, with its own temporary folder (where Hydra's scratch files would go)."""
    scratch = cwd / "tmp"
    scratch.mkdir(exist_ok=True)
    result = train(*TINY, *args, cwd=cwd, env={"TMPDIR": str(scratch)})
    assert not list(scratch.iterdir()), "scratch files left behind"
    return result, result.stdout + result.stderr


def _contents(folder):
    """Every file below `folder` with its bytes and modification time."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _finished_run(folder):
    """A folder as a finished run leaves it: a metrics.csv row (its files' contents do not matter otherwise)."""
    (folder / ".hydra").mkdir(parents=True)
    for name in (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log", "summary.json"):
        (folder / name).write_text(f"the finished run's {name}\n")
    (folder / "metrics.csv").write_text("epoch,train/loss,val/loss\n1,2.5,2.25\n")
    return folder


def test_a_refused_run_leaves_every_file_of_the_run_already_there_untouched(tmp_path):
    folder = _finished_run(tmp_path / "run")
    before = _contents(folder)
    result, output = _train(f"run_dir={folder}", cwd=tmp_path)
    assert result.returncode == 1, output
    assert f"run folder {folder} already holds a run (metrics.csv, summary.json)" in output
    assert "Traceback" not in output
    assert _contents(folder) == before  # Hydra's .hydra/*.yaml and train.log included


def test_a_run_its_config_check_refuses_gives_its_folder_up(tmp_path):
    """The run takes its folder only once its config passed the checks: a refused run (a job of a sweep, which goes
    on in the same process) neither holds nor makes it."""
    folder = tmp_path / "run"
    result, output = _train(f"run_dir={folder}", "trainer.precision=bogus", cwd=tmp_path)
    assert result.returncode == 1 and "trainer.precision=bogus: expected one of" in output, output
    assert not (folder / ".lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no run folder, no outputs/DATE/TIME


@pytest.fixture
def holder(tmp_path):
    """Another process that owns tmp_path/held (as a running train would), until the test ends."""
    folder = tmp_path / "held"
    process = subprocess.Popen([sys.executable, "-c", "import sys; from losslab.run_lock import claim; "
                                f"claim({str(folder)!r}); print('held', flush=True); sys.stdin.read()"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield folder, process.pid
    process.stdin.close()
    process.wait(timeout=30)


def test_a_folder_owned_by_another_process_is_refused_naming_it(holder, tmp_path):
    folder, pid = holder
    assert owner(folder) == pid
    before = _contents(folder)
    result, output = _train(f"run_dir={folder}", cwd=tmp_path)
    assert result.returncode == 1, output
    assert f"run folder {folder} is in use by process {pid}" in output and "Traceback" not in output
    assert _contents(folder) == before  # no .hydra/ and no train.log of the refused run
    with pytest.raises(LosslabError, match=f"is in use by process {pid}"):
        run(tiny_config(run_dir=folder))
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.pt").write_bytes(b"a resume state")  # refused before it is read
    before = _contents(folder)
    with pytest.raises(LosslabError, match=f"is in use by process {pid}"):
        run(tiny_config(f"resume={folder}"), overrides=["trainer.max_epochs=2"])
    assert _contents(folder) == before


def test_the_lock_goes_with_its_owner(tmp_path):
    folder = tmp_path / "run"
    claim(folder)
    assert owner(folder) == os.getpid() and (folder / ".lock").read_text() == f"{os.getpid()}\n"
    release(folder)
    assert owner(folder) is None and not (folder / ".lock").exists()
    gone = subprocess.run([sys.executable, "-c", f"from losslab.run_lock import claim; claim({str(folder)!r})"],
                          timeout=60)
    assert gone.returncode == 0 and owner(folder) is None  # the kernel released the lock with its process


def test_resume_of_a_folder_that_holds_no_run_writes_nothing_there(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"not a run")
    before = _contents(folder)
    result, output = _train(f"resume={folder}", cwd=tmp_path)
    assert result.returncode == 1, output
    assert f"resume={folder}: that folder holds no losslab run" in output
    assert _contents(folder) == before and sorted(p.name for p in folder.iterdir()) == ["cat.jpg"]
    result, output = _train(f"resume={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert result.returncode == 1 and "no such folder" in output
    assert not (tmp_path / "nowhere").exists()


class _TenOClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 11, 23, 10, 0, 0)


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_folder, "datetime", _TenOClock)
    cfg = validate(tiny_config())
    first = take_run_dir(cfg, None, SINGLE_PROCESS)
    second = take_run_dir(cfg, None, SINGLE_PROCESS)  # the same process: its own folder, claimed once
    assert first == second == Path("outputs/2026-11-23/10-00-00") and owner(tmp_path / first) == os.getpid()
    (tmp_path / first / "metrics.csv").write_text("epoch\n1\n")
    release(tmp_path / first)
    assert take_run_dir(cfg, None, SINGLE_PROCESS) == Path("outputs/2026-11-23/10-00-00_1")
    release(tmp_path / "outputs/2026-11-23/10-00-00_1")


def test_a_read_only_run_folder_is_refused_clearly(tmp_path, monkeypatch):
    folder = _finished_run(tmp_path / "run")
    (folder / "summary.json").unlink()  # killed: resumable
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.pt").write_bytes(b"a resume state")

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("losslab.run_lock._lock", read_only)
    before = _contents(folder)
    assert compose.run_dir(str(folder), None) == str(folder)  # Hydra only "makes" the folder that is there
    with pytest.raises(LosslabError, match=f"run folder {folder} cannot be written \\(Read-only file system\\).*"
                                           "copy its folder somewhere writable and resume the copy"):
        run(tiny_config(f"resume={folder}"), overrides=["trainer.max_epochs=2"])
    assert _contents(folder) == before


def test_sigterm_before_the_first_checkpoint_leaves_a_summary_that_says_so(tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "losslab", *TINY, "trainer.max_epochs=3",
                                f"run_dir={run_dir}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "split.json").exists():  # set up, about to build the model and train
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 0 and summary["resumable"] is False
    assert summary["error"] == ("stopped by SIGTERM during epoch 1 with no checkpoint on disk: there is nothing to "
                                "resume; start the run again")
    assert "loss_curves.png" not in output and "resume=" not in output  # the closing line names what is there
    assert "interrupted after 0 epochs | stopped by SIGTERM during epoch 1" in output
    assert "Traceback" not in output
    # It finished no epoch, so it is no run to keep: started again with the same run_dir, the new run takes the
    # folder and the stopped run's summary and split go.
    assert not holds_run(run_dir)
    assert take_run_dir(validate(tiny_config(run_dir=run_dir)), None, SINGLE_PROCESS) == run_dir
    release(run_dir)
    assert not (run_dir / "summary.json").exists() and not (run_dir / "split.json").exists()


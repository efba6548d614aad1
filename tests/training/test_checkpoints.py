"""What a run keeps (trainer.checkpoints, trainer.keep_resume_state), what each checkpoint holds, and the files of
every epoch, written as it ends in the order that keeps a kill harmless."""

from __future__ import annotations

import errno
import io
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from conftest import tiny_config
from losslab import build_model, compose_config, run
from losslab.commands.saved_model import checkpoint_path
from losslab.config.plan import checkpoint_choice
from losslab.config.validation import validate
from losslab.errors import LosslabError
from losslab.modeling.weights import read_checkpoint
from losslab.reporting.comparison import folder_size
from losslab.reporting.curves import plot_loss_curves
from losslab.reporting.history import read_metrics
from losslab.training import checkpoints, epoch_files
from losslab.training import run as run_module
from losslab.training.checkpoints import RESUME_KEYS, WEIGHTS_KEYS, finish_checkpoints, save_checkpoint
from losslab.training.epoch_files import EpochFiles, RecordError


@pytest.fixture(scope="module")
def both(module_tmp_path):
    """A finished run that keeps both checkpoints, whose best epoch (by the highest lr) is the first of two."""
    run_dir = module_tmp_path
    return run(tiny_config("trainer.max_epochs=2", "trainer.checkpoints=both", "trainer.monitor=lr",
                           "trainer.mode=max", "eval.every=0", run_dir=run_dir))


def test_a_finished_run_keeps_weights_the_size_of_the_models_own_state_dict(both):
    checkpoints = both.run_dir / "checkpoints"
    best, last = read_checkpoint(checkpoints / "best.pt"), read_checkpoint(checkpoints / "last.pt")
    assert set(best) == set(last) == set(WEIGHTS_KEYS)  # no optimizer, schedule, random streams or history
    assert (best["epoch"], last["epoch"]) == (1, 2) == (both.summary["best_epoch"], both.summary["epochs_run"])
    assert best["metrics"] == pytest.approx(both.history[0]) and last["metrics"] == pytest.approx(both.history[1])
    assert best["classes"] == ["circle", "square", "triangle"] and best["category_ids"] == [1, 2, 3]
    model = build_model(tiny_config(), num_classes=3)
    model.load_state_dict(best["model"])
    own = io.BytesIO()
    torch.save(model.state_dict(), own)
    for path in (checkpoints / "best.pt", checkpoints / "last.pt"):
        assert path.stat().st_size <= 1.05 * own.tell(), path
    summary = json.loads((both.run_dir / "summary.json").read_text())
    assert summary["resumable"] is False
    assert summary["size_mb"] == pytest.approx(folder_size(both.run_dir) / 1e6, abs=0.1)
    assert sorted(p.name for p in both.run_dir.iterdir()) == [".hydra", "checkpoints", "data_audit.json",
                                                              "data_audit.png", "loss_curves.png", "metrics.csv",
                                                              "split.json", "summary.json"]


def test_resuming_a_finished_run_without_its_resume_state_says_how_to_keep_it(both):
    before = {p: p.stat().st_mtime_ns for p in both.run_dir.rglob("*")}
    with pytest.raises(LosslabError, match="trainer.keep_resume_state=false, which keeps only weights"):
        run(tiny_config(f"resume={both.run_dir}"), overrides=["trainer.max_epochs=3"])
    assert {p: p.stat().st_mtime_ns for p in both.run_dir.rglob("*")} == before


@pytest.mark.parametrize(("choice", "best_epoch", "kept"), [
    ("best", 1, {"best.pt"}), ("last", 1, {"last.pt"}), ("both", 1, {"best.pt", "last.pt"}),
    ("both", 2, {"best.pt", "last.pt"}), ("none", 1, None)])
def test_finishing_reduces_the_checkpoints_to_what_the_run_keeps(tmp_path, choice, best_epoch, kept):
    folder = tmp_path / "checkpoints"
    resume = {"model": {"w": torch.full((4,), 2.0)}, "epoch": 2, "config": "c", "classes": ["a"], "category_ids": [1],
              "metrics": {"epoch": 2}, "optimizer": {"state": {}}, "scheduler": {}, "rng": {}, "history": []}
    save_checkpoint(folder / "last.pt", resume)
    best = {**{k: resume[k] for k in WEIGHTS_KEYS}, "epoch": best_epoch, "metrics": {"epoch": best_epoch}}
    save_checkpoint(folder / "best.pt", best)
    finish_checkpoints(folder, choice, resume, best_epoch)
    if kept is None:
        assert not folder.exists()
        return
    assert {p.name for p in folder.iterdir()} == kept
    if "last.pt" in kept:
        last = read_checkpoint(folder / "last.pt")
        assert set(last) == set(WEIGHTS_KEYS) and last["epoch"] == 2 and torch.equal(last["model"]["w"],
                                                                                     resume["model"]["w"])
    if kept == {"best.pt", "last.pt"}:  # the best epoch's weights are kept once, in one file with two names
        same = (folder / "best.pt").stat().st_ino == (folder / "last.pt").stat().st_ino
        assert same == (best_epoch == 2)


def test_checkpoints_choices_and_the_booleans_of_older_configs():
    assert [checkpoint_choice(v) for v in (True, False, "True", "false", "best", "none")] == [
        "both", "none", "both", "none", "best", "none"]
    validate(compose_config(["trainer.checkpoints=true"]))  # a stored config of before keeps working
    with pytest.raises(LosslabError, match="trainer.checkpoints=sometimes: expected one of best, last, both, none"):
        validate(compose_config(["trainer.checkpoints=sometimes"]))
    with pytest.raises(LosslabError, match="keep_resume_state=true with trainer.checkpoints=none"):
        validate(compose_config(["trainer.checkpoints=none", "trainer.keep_resume_state=true"]))
    with pytest.raises(LosslabError, match="trainer.on_extend=restart: expected one of last_lr, replan"):
        validate(compose_config(["trainer.on_extend=restart"]))


@pytest.mark.parametrize(("choice", "asked", "message"), [
    ("last", "best", "keeps only last.pt \\(trainer.checkpoints=last\\): use --checkpoint last, or train with "
                     "trainer.checkpoints=best or both"),
    ("best", "last", "keeps only best.pt \\(trainer.checkpoints=best\\): use --checkpoint best"),
    ("none", "best", "kept no checkpoint \\(trained with trainer.checkpoints=none\\)"),
    (True, "best", "it has none yet")])
def test_inference_on_a_run_without_the_checkpoint_says_what_is_missing_and_how_to_keep_it(tmp_path, choice, asked,
                                                                                          message):
    with pytest.raises(LosslabError, match=message):
        checkpoint_path(tmp_path, asked, {"trainer": {"checkpoints": choice}})


def _state(weights: torch.Tensor, epoch: int) -> dict:
    return {"model": {"w": weights}, "epoch": epoch, "config": "c", "classes": ["a"], "category_ids": [1],
            "metrics": {"epoch": epoch}, "optimizer": {"state": {0: {"exp_avg": weights * 2}}}, "scheduler": {},
            "rng": {"torch": torch.zeros(3, dtype=torch.uint8)}, "history": []}


def test_an_epochs_files_are_written_in_order_and_its_line_logged_once_its_checkpoint_and_metrics_are_on_disk(
        tmp_path, monkeypatch, caplog):
    events = []

    def save(path, state):
        save_checkpoint(path, state)
        events.append(path.name)

    class Events(logging.Handler):
        def emit(self, record):
            events.append(record.getMessage())

    monkeypatch.setattr(epoch_files, "save_checkpoint", save)
    monkeypatch.setattr(epoch_files, "write_metrics", lambda path, rows: events.append(f"metrics {len(rows)}"))
    monkeypatch.setattr(epoch_files, "plot_loss_curves",
                        lambda rows, path, title, best: events.append(f"curves {len(rows)}"))
    handler = Events()
    epoch_files.log.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger=epoch_files.log.name):
            weights = torch.zeros(5)
            files = EpochFiles(tmp_path, "best", "title")
            files.write([{"epoch": 1}], 1, True, "epoch 1/2", _state(weights, 1))
            weights += 1.0  # the next epoch trains on: the checkpoint keeps epoch 1's values
            files.write([{"epoch": 1}, {"epoch": 2}], 1, False, "epoch 2/2", _state(weights, 2))
    finally:
        epoch_files.log.removeHandler(handler)
    assert events == ["last.pt", "best.pt", "metrics 1", "epoch 1/2", "curves 1",
                      "last.pt", "metrics 2", "epoch 2/2", "curves 2"]
    best, last = torch.load(tmp_path / "checkpoints" / "best.pt"), torch.load(tmp_path / "checkpoints" / "last.pt")
    assert torch.equal(best["model"]["w"], torch.zeros(5)) and set(best) == set(WEIGHTS_KEYS)
    assert torch.equal(last["model"]["w"], torch.ones(5)) and set(RESUME_KEYS) <= set(last)
    assert torch.equal(last["optimizer"]["state"][0]["exp_avg"], torch.full((5,), 2.0))


def test_an_epochs_line_is_logged_when_it_ends_before_the_next_epoch_trains(tmp_path, monkeypatch, caplog):
    passes = run_module.run_epoch

    def announced(session, epoch, *args, **kwargs):
        run_module.log.info("-- epoch %d begins", epoch)
        return passes(session, epoch, *args, **kwargs)

    monkeypatch.setattr(run_module, "run_epoch", announced)
    with caplog.at_level(logging.INFO):
        run(tiny_config("trainer.max_epochs=2", "eval.every=0", run_dir=tmp_path))
    said = [message.split(" |")[0] for message in caplog.messages if message.startswith(("-- epoch", "epoch "))]
    assert said == ["-- epoch 1 begins", "epoch 1/2", "-- epoch 2 begins", "epoch 2/2"]


ROWS = [{"epoch": epoch, "lr": 1e-3, "train/loss": 2.0 - epoch / 10, "val/loss": 2.2 - epoch / 5}
        for epoch in (1, 2, 3)]


def _curves_of(rows, path):
    plot_loss_curves(rows, path, "title", 1)
    return imread(path)


def test_the_curves_are_those_of_every_epoch_so_far_and_no_other_file_is_left(tmp_path):
    files = EpochFiles(tmp_path, "none", "title")
    for epoch in (1, 2, 3):
        files.write(ROWS[:epoch], 1, epoch == 1, f"epoch {epoch}/3", None)
    assert np.array_equal(imread(tmp_path / "loss_curves.png"), _curves_of(ROWS, tmp_path / "expected.png"))
    assert read_metrics(tmp_path / "metrics.csv") == ROWS
    assert sorted(path.name for path in tmp_path.iterdir()) == ["expected.png", "loss_curves.png", "metrics.csv"]


def _read_only(path, *args):
    raise OSError(errno.EROFS, "Read-only file system", str(path))


def test_a_folder_turning_read_only_mid_run_keeps_the_first_error(tmp_path, monkeypatch, caplog):
    saves = []

    def save_once(path, state):
        saves.append(path.name)
        if len(saves) > 2:  # last.pt and best.pt of epoch 1 are written, then the disk turns read-only
            _read_only(path)
        save_checkpoint(path, state)

    monkeypatch.setattr(epoch_files, "save_checkpoint", save_once)
    monkeypatch.setattr(run_module, "write_json", _read_only)
    with pytest.raises(LosslabError) as raised, caplog.at_level(logging.ERROR):
        run(tiny_config("model=retinanet", "trainer.max_epochs=3", "eval.every=0", run_dir=tmp_path))
    message = str(raised.value)
    assert message.startswith(f"could not write {tmp_path / 'checkpoints' / 'last.pt'}: Read-only file system")
    assert f"after epoch 1; continue with: train resume={tmp_path}" in message
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "summary.json").exists() and "summary.json: Read-only file system" in caplog.text
    assert [row["epoch"] for row in read_metrics(tmp_path / "metrics.csv")] == [1, 2]  # written what it could


def test_a_failed_write_is_raised_once_the_epochs_other_files_are_written_and_its_line_is_not_logged(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(epoch_files, "write_metrics", _read_only)
    files = EpochFiles(tmp_path, "last", "title")
    with pytest.raises(RecordError) as raised, caplog.at_level(logging.INFO):
        files.write(ROWS[:1], 1, True, "epoch 1/2", _state(torch.zeros(5), 1))
    assert str(raised.value) == f"could not write {tmp_path / 'metrics.csv'}: Read-only file system"
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1  # written before it
    assert (tmp_path / "loss_curves.png").is_file()  # and after it
    assert "epoch 1/2" not in caplog.text and "could not write" in caplog.text


def _filling_the_disk(tmp_path, monkeypatch, after: int, error: Exception) -> None:
    """torch.save fills the disk from its `after`+1-th call on: it leaves a partial file and raises `error`; the disk
    has 57 MB free once no partial file is left."""
    saves, real_save = [], torch.save

    def save(state, path, **options):
        saves.append(path)
        if len(saves) > after:
            path.write_bytes(bytes(4096))
            raise error
        real_save(state, path, **options)

    def usage(folder):
        free = 0 if any(tmp_path.rglob("*.tmp")) else 57_000_000
        return shutil._ntuple_diskusage(10**9, 10**9 - free, free)

    monkeypatch.setattr(checkpoints.torch, "save", save)
    monkeypatch.setattr(shutil, "disk_usage", usage)


def test_a_full_disk_is_named_with_the_last_complete_epoch_and_leaves_no_partial_file(tmp_path, monkeypatch, caplog):
    # Epoch 1 writes last.pt and best.pt; epoch 2's last.pt fills the disk, and torch says only where it stopped.
    torn = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 57611200 vs 57611136")
    _filling_the_disk(tmp_path, monkeypatch, after=2, error=torn)
    with pytest.raises(LosslabError) as raised, caplog.at_level(logging.INFO):
        run(tiny_config("trainer.max_epochs=2", "eval.every=0", run_dir=tmp_path))
    message = str(raised.value)
    full = epoch_files.no_space(tmp_path)
    assert full.startswith("no space left on ") and full.endswith(" (57 MB free)")
    assert message == (f"could not write {tmp_path / 'checkpoints' / 'last.pt'}: {full}; epoch 2 is not finished (its "
                       "files are incomplete; epoch 1 is the last whose files are complete): the run stopped after "
                       f"epoch 1; continue with: train resume={tmp_path}")
    assert [path.name for path in tmp_path.rglob("*tmp*")] == []
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1
    assert "epoch 1/2" in caplog.text and "epoch 2/2" not in caplog.text  # epoch 2 is never announced as finished
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["error"], summary["resumable"]) == ("failed", message, True)


def test_a_checkpoint_write_that_fails_or_is_interrupted_removes_its_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"epoch": 1, "model": {}})
    _filling_the_disk(tmp_path, monkeypatch, after=0, error=OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError) as raised:
        save_checkpoint(path, {"epoch": 2, "model": {}})
    assert raised.value.errno == errno.ENOSPC
    assert str(RecordError(path, raised.value)) == f"could not write {path}: {epoch_files.no_space(path.parent)}"
    monkeypatch.setattr(checkpoints.torch, "save", lambda state, tmp, **options: (
        tmp.write_bytes(bytes(10)), (_ for _ in ()).throw(KeyboardInterrupt())))
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C or SIGTERM in the middle of a write
        save_checkpoint(path, {"epoch": 2, "model": {}})
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
    assert read_checkpoint(path)["epoch"] == 1

"""The helper process that draws loss_curves.png while a run trains: the figure the run's own process would draw,
its errors raised in the run as they were raised there, Ctrl-C left to the run, an end when its input closes, and
no torch."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from matplotlib.image import imread

from losslab.reporting import curve_process
from losslab.reporting.curve_process import CurveProcess
from losslab.reporting.curves import plot_loss_curves

ROWS = [{"epoch": epoch, "lr": 1e-3, "train/loss": 2.0 - epoch / 10, "val/loss": 2.2 - epoch / 5, "train/cls": 1.0,
         "val/cls": 1.1 - epoch / 20} for epoch in (1, 2, 3)]


@pytest.fixture
def helper():
    process = CurveProcess.start()
    yield process
    process.close()


def draw(helper: CurveProcess, path, rows=ROWS) -> None:
    helper.submit(rows, path, "a title", 2)
    helper.result()


def test_the_helper_draws_the_figure_the_run_would_draw_then_ends_with_its_input(tmp_path):
    helper = CurveProcess.start()
    draw(helper, tmp_path / "helper.png")
    draw(helper, tmp_path / "helper2.png", ROWS[:2])
    helper.close()
    assert helper._process.returncode == 0
    plot_loss_curves(ROWS, tmp_path / "here.png", "a title", 2)
    plot_loss_curves(ROWS[:2], tmp_path / "here2.png", "a title", 2)
    assert np.array_equal(imread(tmp_path / "helper.png"), imread(tmp_path / "here.png"))
    assert np.array_equal(imread(tmp_path / "helper2.png"), imread(tmp_path / "here2.png"))
    assert not np.array_equal(imread(tmp_path / "helper.png"), imread(tmp_path / "helper2.png"))


def test_a_drawing_that_fails_in_the_helper_raises_its_error_here_and_the_helper_goes_on(tmp_path, helper):
    with pytest.raises(FileNotFoundError) as raised:
        draw(helper, tmp_path / "no such folder" / "curves.png")
    assert raised.value.strerror == "No such file or directory"
    draw(helper, tmp_path / "curves.png")
    assert imread(tmp_path / "curves.png").shape[0] > 100


def test_the_helper_leaves_ctrl_c_to_the_run_and_one_that_died_is_a_connection_error(tmp_path, helper):
    draw(helper, tmp_path / "first.png")  # it is ready: its signal handling is set
    helper._process.send_signal(signal.SIGINT)
    draw(helper, tmp_path / "after ctrl-c.png")
    assert (tmp_path / "after ctrl-c.png").is_file()
    helper._process.kill()
    helper._process.wait()
    with pytest.raises(ConnectionError, match=r"the helper process drawing the curves ended \(exit code -9\)"):
        draw(helper, tmp_path / "never.png")
    assert not (tmp_path / "never.png").exists()


def test_the_helper_imports_no_torch():
    code = ("import sys, losslab.reporting.curve_process, losslab.reporting.curves\n"
            "print(sorted({'torch', 'torchvision'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_closing_ends_the_helper_even_while_a_forked_process_holds_its_input_open(tmp_path):
    helper = CurveProcess.start()
    draw(helper, tmp_path / "curves.png")
    holder = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))  # as a DataLoader worker
    holder.start()
    try:
        helper.close()  # asked to stop: it does not wait for its input to close (30 s, then killed)
        assert helper._process.returncode == 0
    finally:
        holder.kill()
        holder.join()


def test_a_helper_that_cannot_start_is_none(monkeypatch):
    def no_interpreter(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(curve_process.subprocess, "Popen", no_interpreter)
    assert CurveProcess.start() is None

"""The installed scripts end their process once the command is done, as the interpreter would end it but without
tearing down torch's modules: threads that are not daemons finish, atexit functions run, the console is flushed,
and the exit code is the command's."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from losslab import cli

folder = Path(sys.argv[1])
atexit.register(lambda: (folder / "atexit").write_text("ran"))

def late():
    time.sleep(0.3)
    (folder / "thread").write_text("ran")

def command():
    threading.Thread(target=late).start()
    print("printed, not flushed", end="")
    return {result}

cli.exit_now(cli.exit_code_of(command))
"""


@pytest.mark.parametrize(("result", "code", "stderr"), [
    ("None", 0, ""), ("0", 0, ""), ("3", 3, ""), ("sys.exit(4)", 4, ""), ("sys.exit('a message')", 1, "a message\n")])
def test_a_command_ends_its_process_with_its_code_after_its_threads_and_exit_functions(tmp_path, result, code,
                                                                                       stderr):
    ended = subprocess.run([sys.executable, "-c", SCRIPT.format(result=result), str(tmp_path)], capture_output=True,
                           text=True, timeout=60)
    assert (ended.returncode, ended.stdout, ended.stderr) == (code, "printed, not flushed", stderr)
    assert (tmp_path / "thread").read_text() == (tmp_path / "atexit").read_text() == "ran"


def test_an_unexpected_error_ends_the_process_the_usual_way_with_its_traceback(tmp_path):
    ended = subprocess.run([sys.executable, "-c", SCRIPT.format(result="1 / 0"), str(tmp_path)], capture_output=True,
                           text=True, timeout=60)
    assert ended.returncode == 1 and ended.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert (tmp_path / "thread").read_text() == (tmp_path / "atexit").read_text() == "ran"


def test_a_command_that_leaves_a_thread_pool_running_still_ends(tmp_path):
    """concurrent.futures stops its idle workers in a thread exit hook, run before the threads are joined."""
    left_running = "__import__('concurrent.futures').futures.ThreadPoolExecutor(2).submit(time.sleep, 0.1) and 5"
    script = SCRIPT.format(result=left_running)
    ended = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert ended.returncode == 5 and (tmp_path / "atexit").read_text() == "ran"

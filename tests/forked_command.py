"""Run an installed console script (`train`, `losslab`) as a fork of a server that has imported the package.

A new interpreter spends about five seconds importing torch, torchvision and losslab before a command does anything,
and the docs and CLI tests run about a hundred commands. Here a multiprocessing fork server imports them once and
each command is a fork of it: the entry point the installed script calls (read from the package's metadata), with
the script's argv, working folder, environment and import path, its output in files and its exit code as the
script's. Only what was imported before it started differs from a new process (and what the interpreter or those
imports read from the environment then: the server has the test process's environment). (A fork of the test process
itself would hang: OpenMP's threads, started by the tests' own training, do not survive a fork; the server runs no
torch.)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from importlib.metadata import entry_points
from pathlib import Path

from losslab.cli import exit_code_of, exit_now

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent  # where the installed scripts are
PRELOADED = ["torch", "torchvision", "matplotlib.pyplot", "hydra", "losslab.cli", "losslab.commands.train",
             "losslab.training.run"]
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOADED)


def train(*args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None):
    """`train ARGS` typed in the folder `cwd`, in this process's environment updated by `env`."""
    return run_forked([str(BIN / "train"), *args], cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def run_forked(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run the console script argv[0] names with argv in a fork of the server; the result as
    subprocess.run(capture_output=True, text=True) gives it."""
    with tempfile.TemporaryDirectory() as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        process = _context.Process(target=_run_script, args=(list(argv), str(cwd), dict(env), str(out), str(err)))
        process.start()
        try:
            process.join(timeout)
            if process.exitcode is None:
                raise subprocess.TimeoutExpired(argv, timeout, _text(out), _text(err))
        finally:
            _kill_group(process.pid)  # the command if it still runs, and any worker it left behind
            process.join()
        return subprocess.CompletedProcess(argv, process.exitcode, _text(out), _text(err))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _text(path: Path) -> str:
    """What subprocess's text mode reads: decoded, with universal newlines (tqdm's carriage returns included)."""
    text = path.read_bytes().decode() if path.is_file() else ""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _run_script(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    code = 1
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises KeyboardInterrupt, as in a script
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None  # read from TMPDIR again, as a new process would
        for path, fd in ((out, 1), (err, 2)):
            opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (they live as long as the process)
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        sys.argv = argv
        # As the script's interpreter has it: the script's folder first; not the test folders or the working folder.
        sys.path[:] = [str(Path(argv[0]).parent), *(entry for entry in sys.path if entry not in ("", ".")
                                                     and not Path(entry).resolve().is_relative_to(TESTS))]
        (script,) = entry_points(group="console_scripts", name=Path(argv[0]).name)
        code = exit_code_of(script.load())
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 (the script would print it and exit 1)
        traceback.print_exc()
        code = 1
    finally:
        exit_now(code)  # as the script ends: threads, atexit functions, console, exit code

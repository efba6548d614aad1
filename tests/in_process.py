"""Run `train ARGS` and `losslab ARGS` in the test process, as a user's shell would run the installed scripts.

A new interpreter spends about five seconds importing torch, torchvision and losslab before a command does anything,
and the CLI and docs tests run about a hundred commands; in process each costs only its own work. The command gets
what a new process would have -- its working folder, environment, argv, a logging setup of its own and no Hydra
instance -- and its exit code and output come back as subprocess.run(capture_output=True, text=True) gives them.
Everything it changed in the process (the working folder, environment, argv, import path, modules imported from the
working folder, signal handlers, logging and warning settings, Hydra's global state) is put back afterwards.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra

from losslab import cli


def train(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`train ARGS` typed in the folder `cwd`, in this process's environment updated by `env`."""
    return run_command(["train", *args], cwd=cwd, env=env)


def losslab(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`losslab ARGS` typed in the folder `cwd`."""
    return run_command(["losslab", *args], cwd=cwd, env=env)


def run_command(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The console script argv[0] names (`train` or `losslab`, or a path to one), run with argv[1:]."""
    script = Path(argv[0]).name
    command = ["train", *argv[1:]] if script == "train" else list(argv[1:])
    if script not in ("train", "losslab"):
        raise ValueError(f"{argv[0]} is not one of losslab's console scripts")
    out, err = io.StringIO(), io.StringIO()
    with _as_a_new_process(Path(cwd), env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = _exit_code(command)
    return subprocess.CompletedProcess(argv, code, _text(out), _text(err))


def _exit_code(command: list[str]) -> int:
    """What the script's `sys.exit(main())` ends with; an unexpected exception ends it with its traceback, as
    the interpreter would."""
    try:
        code = cli.main(command)
    except SystemExit as exited:
        code = exited.code
    except Exception:  # noqa: BLE001 (the script would print it and exit 1)
        traceback.print_exc()
        return 1
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _text(stream: io.StringIO) -> str:
    """What subprocess's text mode reads: universal newlines (tqdm's carriage returns included)."""
    return stream.getvalue().replace("\r\n", "\n").replace("\r", "\n")


@contextlib.contextmanager
def _as_a_new_process(cwd: Path, env: dict[str, str]):
    root = logging.getLogger()
    saved = (os.getcwd(), dict(os.environ), list(sys.argv), list(sys.path), root.handlers[:], root.level,
             signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    modules_before = set(sys.modules)
    GlobalHydra.instance().clear()
    os.chdir(cwd)
    os.environ.update(env)
    tempfile.tempdir = None  # read from TMPDIR again, as a new process would
    root.handlers = []  # a new process's logging: the command sets up its own
    root.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        for handler in root.handlers:
            if handler not in saved[4]:
                handler.close()  # train.log, left open by Hydra's logging setup
        folder, environ, argv, path, root.handlers, level, sigint, sigterm = saved
        root.setLevel(level)  # through setLevel: loggers cache what their level lets through
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environ)
        tempfile.tempdir = None
        sys.argv, sys.path[:] = argv, path
        signal.signal(signal.SIGINT, sigint)
        signal.signal(signal.SIGTERM, sigterm)
        GlobalHydra.instance().clear()
        _stop_launcher_workers()
        for name in set(sys.modules) - modules_before:  # a user's loss module is the folder's own
            if Path(getattr(sys.modules[name], "__file__", None) or "/").resolve().is_relative_to(cwd.resolve()):
                del sys.modules[name]


def _stop_launcher_workers() -> None:
    """End the worker processes joblib's launcher keeps for the next call (loky's reusable executor), as a command's
    end would: they hold the command's working folder, which a test deletes once it passes."""
    loky = sys.modules.get("joblib.externals.loky")
    if loky is not None:
        loky.get_reusable_executor().shutdown(wait=True, kill_workers=True)

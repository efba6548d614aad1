"""loss_curves.png drawn by a helper process while a run trains.

A thread of the training process would slow training down: matplotlib's import and drawing are Python code, and
they take the interpreter's lock from the training loop, whose model code is Python too. Measured on 2 cores with
the default model: importing matplotlib and drawing four times in a thread cost six training steps 1.36 s; the same
work in another process cost them 0.08-0.34 s.

The helper is this module run by the same interpreter (`python -m losslab.reporting.curve_process`, started by
`CurveProcess.start`). It reads pickled requests from its standard input and answers each with a pickled result:
None, or the exception that drawing raised. It ignores Ctrl-C (the run decides what a stop means) and ends when
its input closes, which also happens when the run's process dies.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import losslab

_PACKAGE_ROOT = str(Path(losslab.__file__).resolve().parent.parent)  # the folder losslab is imported from


class CurveProcess:
    """The helper process: `submit` a drawing, wait for its `result`; `close` when the run is done."""

    def __init__(self, process: subprocess.Popen):
        self._process = process

    @classmethod
    def start(cls) -> CurveProcess | None:
        """A new helper, or None if none can start (the caller then draws itself)."""
        paths = [_PACKAGE_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        try:
            # -P: not the working folder first on the import path; PYTHONPATH: losslab as this process imports it
            process = subprocess.Popen([sys.executable, "-P", "-m", __name__], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)})
        except OSError:
            return None
        return cls(process)

    def submit(self, rows: list[dict], path: Path, title: str, best_epoch: int | None) -> None:
        """Have the helper run plot_loss_curves(rows, path, title, best_epoch); `result` waits for it. Raises
        ConnectionError if the helper is gone."""
        try:
            pickle.dump((rows, path, title, best_epoch), self._process.stdin)
            self._process.stdin.flush()
        except OSError as lost:
            raise self._gone() from lost

    def result(self) -> None:
        """Wait for the drawing submitted; raises what plot_loss_curves raised, or ConnectionError if the helper
        is gone."""
        try:
            error = pickle.load(self._process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as lost:
            raise self._gone() from lost
        if error is not None:
            raise error

    def _gone(self) -> ConnectionError:
        return ConnectionError(f"the helper process drawing the curves ended (exit code {self._process.poll()})")

    def close(self) -> None:
        """End the helper: its input closes, it exits."""
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()


def serve() -> NoReturn:
    """The helper's loop: draw each request, answer it, end when the input closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from losslab.reporting.curves import plot_loss_curves  # matplotlib loads while the run's first request waits

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print would break the answers
    while True:
        try:
            rows, path, title, best_epoch = pickle.load(requests)
        except EOFError:  # the run is done with it: every answer is written, nothing else to keep
            os._exit(0)  # without tearing down matplotlib's modules (0.2 s the run would wait for)
        try:
            plot_loss_curves(rows, path, title, best_epoch)
            answer = None
        except Exception as error:  # the run reports it as it would its own
            answer = error
        try:
            data = pickle.dumps(answer)
        except Exception:  # an exception that does not pickle: its text
            data = pickle.dumps(RuntimeError(repr(answer)))
        answers.write(data)
        answers.flush()


if __name__ == "__main__":
    serve()

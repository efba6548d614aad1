"""loss_curves.png drawn by a helper process while a run trains.

A thread of the training process would slow training down: matplotlib's import and drawing are Python code, and
they take the interpreter's lock from the training loop, whose model code is Python too. Measured on 2 cores with
the default model: importing matplotlib and drawing four times in a thread cost six training steps 1.36 s; the same
work in another process cost them 0.08-0.34 s.

The helper is this module's `serve`, run by the same interpreter in its own process group (started by
`CurveProcess.start`). It reads pickled requests from its standard input and answers each with a pickled result:
None, or the exception that drawing raised. Ctrl-C is not its to handle (the run decides what a stop means); it
ends when the run closes it, or when its input closes because the run's process died.
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
# -P: not the working folder on the import path; losslab's folder last, so that it is found as this process found
# it (a source checkout run without installing) without shadowing anything installed.
_BOOT = f"import sys; sys.path.append({_PACKAGE_ROOT!r}); from {__name__} import serve; serve()"
_STOP = "stop"  # the request that ends the helper (its input may stay open in processes forked from the run)


class CurveProcess:
    """The helper process: `submit` a drawing, wait for its `result`; `close` when the run is done."""

    def __init__(self, process: subprocess.Popen):
        self._process = process

    @classmethod
    def start(cls) -> CurveProcess | None:
        """A new helper, or None if none can start (the caller then draws itself)."""
        try:
            # Its own process group: a Ctrl-C in the terminal is the run's to handle, not the helper's.
            process = subprocess.Popen([sys.executable, "-P", "-c", _BOOT], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, process_group=0)
        except Exception:  # noqa: BLE001 (no interpreter to start, no process left: the run draws itself)
            return None
        return cls(process)

    def submit(self, rows: list[dict], path: Path, title: str, best_epoch: int | None) -> None:
        """Have the helper run plot_loss_curves(rows, path, title, best_epoch); `result` waits for it. Raises
        ConnectionError if the helper is gone (or the request could not be sent)."""
        try:
            pickle.dump((rows, path, title, best_epoch), self._process.stdin)
            self._process.stdin.flush()
        except Exception as lost:
            raise self._gone() from lost

    def result(self) -> None:
        """Wait for the drawing submitted; raises what plot_loss_curves raised, or ConnectionError if the helper
        is gone."""
        try:
            error = pickle.load(self._process.stdout)
        except Exception as lost:
            raise self._gone() from lost
        if error is not None:
            raise error

    def _gone(self) -> ConnectionError:
        return ConnectionError(f"the helper process drawing the curves ended (exit code {self._process.poll()})")

    def close(self) -> None:
        """End the helper: ask it to stop, close its input, wait for it."""
        with contextlib.suppress(Exception):
            pickle.dump(_STOP, self._process.stdin)
            self._process.stdin.flush()
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()


def serve() -> NoReturn:
    """The helper's loop: draw each request, answer it; end when asked to or when the input closes, without
    tearing down matplotlib's modules (0.2 s the run would wait for)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from losslab.reporting.curves import plot_loss_curves  # matplotlib loads while the run's first request waits

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print would break the answers
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            os._exit(0)
        if request == _STOP:
            os._exit(0)
        try:
            plot_loss_curves(*request)
            answer = None
        except Exception as error:  # the run reports it as it would its own
            answer = error
        try:
            data = pickle.dumps(answer)
            pickle.loads(data)  # an exception that pickles may still fail to rebuild (a custom __init__)
        except Exception:
            data = pickle.dumps(RuntimeError(f"{type(answer).__name__}: {answer}"))
        try:
            answers.write(data)
            answers.flush()
        except OSError:  # the run is gone (killed): nothing to answer
            os._exit(0)

"""Console entry points: `train` (the Hydra app) and `losslab COMMAND` (every verb, `losslab train` included).

Nothing heavy is imported here: a command's module (and torch, when it needs it) is imported only once that
command runs, so `--help`, `losslab runs` and tab completion answer at once. The installed scripts run a command
through `train_script` and `losslab_script`, which end the process as soon as the command is done (see
`exit_now`); `train` and `main` return, for callers in Python.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

# verb -> (module with add_arguments(parser) and main(args) -> exit code, one-line help)
COMMANDS = {
    "train": ("losslab.commands.train", "train a model: the same as the `train` command (train --help)"),
    "plot": ("losslab.commands.plot", "re-draw a run's loss_curves.png from its metrics.csv"),
    "compare": ("losslab.commands.compare", "rank runs or whole sweeps by a metrics.csv column"),
    "runs": ("losslab.commands.runs", "list the runs below a folder, newest first"),
    "evaluate": ("losslab.commands.evaluate", "score a run's checkpoint on a split; COCO exports and plots"),
    "predict": ("losslab.commands.predict", "detect objects in image files with a run's model; drawn images and "
                "COCO results"),
    "export": ("losslab.commands.export", "write a run's model as one TorchScript or ONNX file, checked against "
               "PyTorch"),
    "show-augment": ("losslab.commands.show_augment", "draw augmented training samples (boxes, masks) into a PNG "
                     "grid"),
}


# A folder the command cannot write into (a read-only run folder, a full disk): said in one line, not a traceback.
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC)


def train_script() -> NoReturn:
    """The installed `train` script, and `python -m losslab`."""
    exit_now(exit_code_of(train))


def losslab_script() -> NoReturn:
    """The installed `losslab` script."""
    exit_now(exit_code_of(main))


def exit_code_of(command: Callable[[], int | None]) -> int:
    """Run `command`; its exit code, as the interpreter would make it of what it returned or gave to sys.exit.
    Other exceptions go on and end the process the usual way, with their traceback."""
    try:
        code = command()
    except SystemExit as exited:
        code = exited.code
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def exit_now(code: int) -> NoReturn:
    """End the process as the interpreter ends it, but without tearing down its modules: wait for the threads
    that are not daemons, run the atexit functions (logging's flush, MLflow, DataLoader workers' shutdown), flush
    the console and exit with `code`.

    The teardown skipped is the slow part once torch is imported: about 1.2 s on 2 cores for torch and
    torchvision alone, 1.5-2 s after a training run, spent after every file of the command is written and
    closed."""
    try:
        # What the interpreter runs at exit, in its order (multiprocessing's own processes end this way too):
        # the threads' exit hooks (concurrent.futures stops its executors) and joining the threads that are
        # not daemons, then the atexit functions, even after a Ctrl-C while waiting for the threads.
        try:
            threading._shutdown()  # noqa: SLF001
        finally:
            atexit._run_exitfuncs()  # noqa: SLF001
    finally:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe (`losslab runs | head`): nothing to keep
                stream.flush()
        os._exit(code)


def train() -> None:
    """`train [overrides]`: one run or a sweep (the Hydra app)."""
    if {"--help", "-h"} & set(sys.argv[1:]):
        print(train_help())
        return
    from losslab.commands.train import main as train_main

    train_main()


def train_help() -> str:
    """conf/hydra/help/losslab.yaml's template, as Hydra's --help would print it.

    Printed here because Hydra's --help lists every config group first (about 3 s of deep copies on 2 cores)
    although the template does not show that list. Hydra's own options stay under --hydra-help.
    """
    import yaml

    from losslab.config.compose import config_dir

    help_config = yaml.safe_load((config_dir() / "hydra" / "help" / "losslab.yaml").read_text())
    text = help_config["template"].replace("$$", "$")
    for key in ("header", "footer"):
        text = text.replace(f"${{hydra.help.{key}}}", help_config[key])
    return text


def main(argv: list[str] | None = None) -> int:
    """`losslab COMMAND ...`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        top_level_parser().parse_args(argv)  # --help, or an error naming the valid commands
        return 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        sys.argv = [f"{sys.argv[0]} train", *rest]  # Hydra reads the overrides from sys.argv
        train()
        return 0
    from losslab.errors import LosslabError

    module = importlib.import_module(COMMANDS[command][0])
    parser = argparse.ArgumentParser(prog=f"losslab {command}", description=COMMANDS[command][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")  # e.g. files predict skipped
    try:
        return module.main(args)
    except LosslabError as error:
        print(f"losslab {command}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        if error.errno not in UNWRITABLE:
            raise
        folder = Path(error.filename).parent if error.filename else "the output folder"
        elsewhere = " Give --out DIR to write elsewhere." if hasattr(args, "out") else ""
        print(f"losslab {command}: error: cannot write into {folder}: {error.strerror}.{elsewhere}", file=sys.stderr)
        return 1


def top_level_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="losslab", description="losslab: train detectors with any loss, and work "
                                     "with the runs. `losslab COMMAND --help` describes each command.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser

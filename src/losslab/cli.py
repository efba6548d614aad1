"""Console entry points: `train` (the Hydra app) and `losslab COMMAND` (every verb, `losslab train` included).

Nothing heavy is imported here: a command's module (and torch, when it needs it) is imported only once that
command runs, so `--help`, `losslab runs` and tab completion answer at once. The installed scripts are
`sys.exit(train())` and `sys.exit(main())`; tests call `main(argv)` in their own process.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

# verb -> (module with add_arguments(parser) and main(args) -> exit code, one-line help)
COMMANDS = {
    "train": ("losslab.commands.train", "train a model: the same as the `train` command (train --help)"),
    "data": ("losslab.commands.data", "audit a dataset's splits before training: classes, sizes, duplicates, leaks; "
             "data_audit.json and .png"),
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
    sys.exit(quiet_on_closed_pipe(train))


def losslab_script() -> NoReturn:
    """The installed `losslab` script."""
    sys.exit(quiet_on_closed_pipe(main))


def quiet_on_closed_pipe(command) -> int:
    """`command()`'s exit code; a reader that closed the pipe early (`losslab runs | head -1`) ends it quietly.

    Python's own recipe (docs.python.org, "Note on SIGPIPE"): standard output goes to devnull, so that the flush at
    exit raises no second BrokenPipeError, and the exit code is 1, as Python's on EPIPE. Commands write their files
    before or whatever their printing does (compare), so a closed pipe costs only the text nobody reads.
    """
    try:
        code = command()
        sys.stdout.flush()  # inside the try: a closed pipe shows up here for buffered text
        return code or 0
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def train() -> None:
    """`train [overrides]`: one run or a sweep (the Hydra app)."""
    if {"--help", "-h"} & set(sys.argv[1:]):
        print(train_help())
        return
    from losslab.commands.train import main as train_main

    train_main()


def train_help() -> str:
    """conf/hydra/help/losslab.yaml's template, as Hydra's --help would print it.

    Printed here because Hydra's --help lists every config group first, seconds of deep copies (docs/performance.md),
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

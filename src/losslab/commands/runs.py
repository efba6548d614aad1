"""`losslab runs [ROOT]`: the runs below a folder, newest first."""

from __future__ import annotations

import argparse
from pathlib import Path

from losslab.reporting.comparison import RUNS_COLUMNS, format_table, list_runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, nargs="?", default=Path("outputs"), help="default: outputs")


def main(args: argparse.Namespace) -> int:
    print(format_table(list_runs(args.root), RUNS_COLUMNS))
    return 0

"""`losslab compare DIR [DIR ...]`: runs, or the jobs of whole sweeps, ranked by a metrics.csv column."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from losslab.reporting.comparison import COMPARE_COLUMNS, compare_runs, format_table
from losslab.reporting.curves import plot_sweep_curves


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="run folders or sweep folders")
    parser.add_argument("--metric", default="val/loss", help="the column to rank by (default val/loss; "
                        "val/ref_loss compares runs trained with different losses fairly)")
    parser.add_argument("--mode", choices=["min", "max"], help="better is lower or higher (default: min for "
                        "losses, max for mAP/AP/AR/precision/recall/F1)")
    parser.add_argument("--out", type=Path, help="where to write comparison.csv and comparison.png "
                        "(default: the folder given, or the current folder for several)")


def main(args: argparse.Namespace) -> int:
    rows = compare_runs(args.dirs, args.metric, args.mode)
    out = args.out or (args.dirs[0] if len(args.dirs) == 1 else Path.cwd())
    table, figure = write_comparison(rows, out)
    print(format_table(rows, COMPARE_COLUMNS[:-1]))
    print(f"table: {table}\nfigure: {figure}")
    return 0


def write_comparison(rows: list[dict], out_dir: Path) -> tuple[Path, Path]:
    """comparison.csv (the rows, best first) and comparison.png (the metric of every run over epochs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "comparison.csv"
    with table.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COMPARE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    figure = plot_sweep_curves([(row["overrides"] or row["run_dir"], row["history"]) for row in rows],
                               out_dir / "comparison.png", columns=(rows[0]["metric"],))
    return table, figure

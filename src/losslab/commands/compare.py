"""`losslab compare DIR [DIR ...]`: runs, or the jobs of whole sweeps, ranked by a metrics.csv column; with
`--group-by KEY` runs that differ only in KEY (seeds) are grouped: mean, interval and a verdict against a baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from losslab.errors import LosslabError
from losslab.reporting import comparison
from losslab.reporting.comparability import comparability_note
from losslab.reporting.ranking import Ranking

# The reason and the comparability warning are printed once above the table.
SHOWN_COLUMNS = tuple(c for c in comparison.COMPARE_COLUMNS if c not in ("rank_reason", "comparable", "run_dir"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="run folders or sweep folders")
    parser.add_argument("--metric", help="the column to rank by, at each run's kept epoch (default: the runs' "
                        "selection metric, trainer.monitor; val/mAP when evaluated, else val/ref_loss, when that is "
                        "each run's own loss and the runs differ in a loss setting)")
    parser.add_argument("--force", action="store_true", help="rank runs the metric cannot compare fairly (other "
                        "task, dataset, split; for a loss, other reference loss or image size), with a warning")
    parser.add_argument("--mode", choices=["min", "max"], help="better is lower or higher (default: min for "
                        "losses, max for mAP/AP/AR/precision/recall/F1)")
    parser.add_argument("--group-by", metavar="KEY", help="group runs that differ only in KEY (trainer.seed; seed "
                        "takes every *.seed key): comparison_stats.csv, mean, 95%% interval, verdict per group")
    parser.add_argument("--baseline", metavar="OVERRIDES", help="with --group-by: the group the others are tested "
                        "against, by its overrides (e.g. loss=focal; default: the loss=default group, else the first)")
    parser.add_argument("--out", type=Path, help="where to write comparison.csv and comparison.png "
                        "(default: the folder given, or the current folder for several)")


def main(args: argparse.Namespace) -> int:
    if args.baseline is not None and args.group_by is None:
        raise LosslabError(f"--baseline {args.baseline} names a group of runs; expected --group-by KEY with it "
                           "(e.g. --group-by trainer.seed), which groups runs that differ only in KEY.")
    runs = comparison.load_runs(args.dirs)
    ranking = comparison.run_ranking(runs, args.metric, args.mode, "--metric")
    note = comparability_note(runs, ranking, forced=args.force or args.metric is not None)
    if note and not (args.force or args.metric):
        raise LosslabError(f"{note.replace('(ranked anyway)', '').strip()}: their values are not measured on the "
                           "same yardstick. Compare runs of one study, or add --force to rank them anyway (the "
                           "table and figure then carry this warning), or name the metric with --metric.")
    rows = [row | {"comparable": note or "yes"} for row in comparison.compare_runs(runs, ranking)]
    out = args.out or (args.dirs[0] if len(args.dirs) == 1 else Path.cwd())
    out.mkdir(parents=True, exist_ok=True)
    table = comparison.write_table(out / "comparison.csv", rows, comparison.COMPARE_COLUMNS)
    try:
        print(f"ranked by {ranking.metric} at each run's kept epoch: {ranking.reason}")
        if note:
            print(f"WARNING: {note}")
        print(comparison.format_table(rows, SHOWN_COLUMNS), flush=True)
    finally:
        # The figures do not wait on the screen: a reader that closed the pipe (| head -1) still gets every file.
        said = write_figures(args, runs, ranking, rows, out, table, note)
    print(said)
    return 0


def write_figures(args: argparse.Namespace, runs: list[comparison.FinishedRun], ranking: Ranking,
                  rows: list[dict], out: Path, table: Path, note: str | None) -> str:
    """comparison.png (with --group-by also comparison_stats.csv and .png), carrying `note` (a warning that the
    runs are not comparable) where there is one; what to print about them."""
    # matplotlib takes most of a second to import: the ranking is on screen before the figures are drawn.
    from losslab.reporting.curves import plot_group_statistics, plot_sweep_curves, sweep_columns

    columns = sweep_columns(ranking.metric)
    if args.group_by is None:
        # Named as in the table (A/2), the overrides that set it apart after it; coloured by its folder.
        curves = [(f"{row['run']}: {row['overrides']}" if row["overrides"] else row["run"], [row["history"]],
                   Path(row["run_dir"])) for row in rows]
        figure = plot_sweep_curves(curves, out / "comparison.png", columns=columns, note=note)
        return f"table: {table}\nfigure: {figure}"
    # scipy's statistics take a second to import: only grouped runs need them.
    from losslab.reporting.repeats import STATS_COLUMNS, format_statistics, group_curves, group_runs, group_statistics

    groups = group_runs(runs, args.group_by)
    statistics = group_statistics(groups, ranking, args.baseline, "--baseline")
    stats_table = comparison.write_table(out / "comparison_stats.csv", statistics, STATS_COLUMNS)
    figure = plot_sweep_curves(group_curves(groups), out / "comparison.png", columns=columns, note=note)
    stats_figure = plot_group_statistics(statistics, ranking.mode, out / "comparison_stats.png", note=note)
    return (f"\nruns differing only in {args.group_by}, grouped (better or worse than the baseline: p < 0.05):\n"
            f"{format_statistics(statistics)}\ntables: {table}, {stats_table}\nfigures: {figure}, {stats_figure}")

"""Console entry points: `train` (the Hydra app) and `losslab` (commands on finished runs)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from losslab.config import config_dir
from losslab.errors import LosslabError
from losslab.evaluate import evaluate_run, metrics_table
from losslab.plots import redraw_run
from losslab.runs import COMPARE_COLUMNS, RUNS_COLUMNS, compare_runs, format_table, list_runs, write_comparison
from losslab.sweep import summarize_sweep
from losslab.train import run

log = logging.getLogger("losslab")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _train_app(cfg: DictConfig) -> float | None:
    """One training run; returns the best monitored value (what Hydra sweepers optimise).

    In a multirun a failing job is logged and recorded (summary.json says failed) but does not
    stop the sweep; a single run exits non-zero.
    """
    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode == RunMode.MULTIRUN
    try:
        result = run(cfg, overrides=list(hydra_config.overrides.task))
    except LosslabError as error:
        log.error("%s", error)
        if multirun:
            return None
        sys.exit(1)
    except Exception:
        if not multirun:
            raise
        log.exception("this job failed; the sweep goes on")
        return None
    return result.summary["best"].get(cfg.trainer.monitor)


def train() -> None:
    """`train [overrides]`: see `train --help` for the config groups."""
    try:
        _train_app()
    except KeyboardInterrupt:
        # run() has already written summary.json (status interrupted) and the last checkpoint.
        log.warning("interrupted")
        sys.exit(130)


class SweepSummaryCallback(Callback):
    """Writes sweep_summary.csv and sweep_curves.png into the sweep folder when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rank_by = config.sweep.rank_by
        rows = summarize_sweep(sweep_dir, rank_by, config.sweep.mode)
        for row in rows:
            log.info("#%d job %s [%s]: %s, best %s %s", row["rank"], row["job"], row["overrides"], row["status"],
                     rank_by, "n/a" if row["best"] is None else f"{row['best']:.4f}")
        log.info("sweep summary: %s, curves: %s", sweep_dir / "sweep_summary.csv", sweep_dir / "sweep_curves.png")


def main(argv: list[str] | None = None) -> int:
    """`losslab COMMAND ...`: commands on finished runs (no training)."""
    parser = argparse.ArgumentParser(prog="losslab", description="Commands on finished losslab runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plot = commands.add_parser("plot", help="re-draw a run's loss_curves.png from its metrics.csv")
    plot.add_argument("run_dir", type=Path, help="a run folder (holding metrics.csv)")
    compare = commands.add_parser("compare", help="rank runs or whole sweeps by a metrics.csv column")
    compare.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="run folders or sweep folders")
    compare.add_argument("--metric", default="val/loss", help="the column to rank by (default val/loss; "
                         "val/ref_loss compares runs trained with different losses fairly)")
    compare.add_argument("--mode", choices=["min", "max"], help="better is lower or higher (default: min for "
                         "losses, max for mAP/AP/AR/precision/recall/F1)")
    compare.add_argument("--out", type=Path, help="where to write comparison.csv and comparison.png "
                         "(default: the folder given, or the current folder for several)")
    evaluate = commands.add_parser("evaluate", help="score a run's checkpoint on a split; COCO exports and plots")
    evaluate.add_argument("run_dir", type=Path, help="a run folder")
    evaluate.add_argument("--split", default="val", choices=["train", "val", "test"])
    evaluate.add_argument("--checkpoint", default="best", choices=["best", "last"])
    evaluate.add_argument("--score-threshold", type=float, help="default: the run's eval.score_threshold")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    runs = commands.add_parser("runs", help="list the runs below a folder, newest first")
    runs.add_argument("root", type=Path, nargs="?", default=Path("outputs"), help="default: outputs")
    args = parser.parse_args(argv)
    try:
        if args.command == "plot":
            print(redraw_run(args.run_dir))
        elif args.command == "compare":
            rows = compare_runs(args.dirs, args.metric, args.mode)
            out = args.out or (args.dirs[0] if len(args.dirs) == 1 else Path.cwd())
            table, figure = write_comparison(rows, out)
            print(format_table(rows, COMPARE_COLUMNS[:-1]))
            print(f"table: {table}\nfigure: {figure}")
        elif args.command == "evaluate":
            metrics = evaluate_run(args.run_dir, args.split, args.checkpoint, args.score_threshold, args.device)
            print(metrics_table(metrics))
            print(f"written to {args.run_dir / ('eval_' + args.split)}")
        elif args.command == "runs":
            print(format_table(list_runs(args.root), RUNS_COLUMNS))
    except LosslabError as error:
        print(f"losslab {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0

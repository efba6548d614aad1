"""`losslab plot RUN_DIR`: re-draw a run's loss_curves.png from its metrics.csv."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from losslab.errors import LosslabError
from losslab.reporting.comparison import run_title
from losslab.reporting.curves import plot_loss_curves
from losslab.reporting.history import read_metrics


def redraw_run(run_dir: Path, out: Path | None = None) -> Path:
    """Re-draw RUN_DIR/loss_curves.png (or `out`/loss_curves.png) from its metrics.csv (and summary.json's best
    epoch)."""
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        raise LosslabError(f"{metrics} does not exist; expected a losslab run folder (outputs/DATE/TIME).")
    rows = read_metrics(metrics)
    if not rows or "epoch" not in rows[0]:
        raise LosslabError(f"{metrics} holds no epochs; expected one row per finished epoch.")
    summary_path = run_dir / "summary.json"
    best_epoch = json.loads(summary_path.read_text()).get("best_epoch") if summary_path.is_file() else None
    config_path = run_dir / ".hydra" / "config.yaml"
    title = run_title(OmegaConf.to_container(OmegaConf.load(config_path))) if config_path.is_file() else run_dir.name
    out = run_dir if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return plot_loss_curves(rows, out / "loss_curves.png", title=title, best_epoch=best_epoch)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="a run folder (holding metrics.csv)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR, e.g. for a read-only run folder)")


def main(args: argparse.Namespace) -> int:
    print(redraw_run(args.run_dir, args.out))
    return 0

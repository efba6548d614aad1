"""Console entry points: `train` (the Hydra app) and `losslab` (commands on finished runs)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from losslab.config import compose_config, config_dir, validate
from losslab.data import build_datasets
from losslab.distributed import launched_world
from losslab.errors import LosslabError
from losslab.evaluate import evaluate_run, metrics_table
from losslab.export import BOX_TOLERANCE, FORMATS, ExportResult, export_run
from losslab.plots import redraw_run
from losslab.predict import PredictResult, predict_images
from losslab.runs import COMPARE_COLUMNS, RUNS_COLUMNS, compare_runs, format_table, list_runs, write_comparison
from losslab.show_augment import show_augment
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
    if launched_world().rank > 0:  # under torchrun the main process reports; the others only warn
        logging.getLogger().setLevel(logging.WARNING)
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
    predict = commands.add_parser("predict", help="detect objects in image files with a run's model; drawn "
                                  "images and COCO results")
    predict.add_argument("run_dir", type=Path, help="a run folder")
    predict.add_argument("sources", nargs="+", metavar="SOURCE", help="image files, folders of images, glob "
                         "patterns (quote them; ** recurses)")
    predict.add_argument("--checkpoint", default="best", choices=["best", "last"])
    predict.add_argument("--score-threshold", type=float, help="keep detections scoring at least this "
                         "(default: the run's eval.score_threshold)")
    predict.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/predict)")
    predict.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    export = commands.add_parser("export", help="write a run's model as one TorchScript or ONNX file, checked "
                                 "against PyTorch")
    export.add_argument("run_dir", type=Path, help="a run folder")
    export.add_argument("--format", default="torchscript", help=f"{' or '.join(FORMATS)} (default torchscript; "
                        "onnx needs pip install 'losslab[export]')")
    export.add_argument("--checkpoint", default="best", choices=["best", "last"])
    export.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/export)")
    export.add_argument("--tolerance", type=float, default=BOX_TOLERANCE, help="largest box difference in pixels "
                        f"allowed between the exported and the PyTorch model (default {BOX_TOLERANCE:g})")
    show = commands.add_parser("show-augment", help="draw augmented training samples (boxes, masks) into a PNG grid")
    show.add_argument("overrides", nargs="*", help="train overrides, e.g. augment=strong data=coco data.images=DIR")
    show.add_argument("--out", type=Path, default=Path("augment.png"), help="the PNG to write (default augment.png)")
    show.add_argument("--samples", type=int, default=8, help="how many samples to draw (default 8)")
    show.add_argument("--seed", type=int, default=0, help="the same seed draws the same augmentations")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")  # e.g. files predict skipped
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
        elif args.command == "predict":
            print(prediction_report(predict_images(args.run_dir, args.sources, args.checkpoint, args.score_threshold,
                                                   args.out, args.batch_size, args.device)))
        elif args.command == "export":
            print(export_report(export_run(args.run_dir, args.format, args.checkpoint, args.out, args.tolerance)))
        elif args.command == "show-augment":
            print(draw_augmentations(args.overrides, args.out, args.samples, args.seed))
    except LosslabError as error:
        print(f"losslab {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


def draw_augmentations(overrides: list[str], out: Path, samples: int, seed: int) -> Path:
    """The configured train split, augmented as `train` would augment it, drawn into `out`."""
    try:
        cfg = compose_config(overrides)
    except HydraException as error:
        raise LosslabError(f"the overrides {' '.join(overrides)} do not compose: {error}") from error
    validate(cfg)
    data = build_datasets(OmegaConf.to_container(cfg.data), OmegaConf.to_container(cfg.split))  # not augmented
    return show_augment(data.train, OmegaConf.to_container(cfg.augment), out, samples, seed, data.classes)


def prediction_report(result: PredictResult) -> str:
    """The console lines closing `losslab predict`."""
    lines = [f"predicted {result.predicted} images, {result.detections} detections: drawn images and "
             f"predictions.json in {result.out_dir}"]
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} files that could not be read (see the warnings above)")
    return "\n".join(lines)


def export_report(result: ExportResult) -> str:
    """The console lines closing `losslab export`."""
    found = result.differences
    return (f"model: {result.model_file}\nmetadata: {result.metadata_file}\n"
            f"checked against the PyTorch model on {found.detections} detections of sample images: boxes differ by "
            f"up to {found.box:.2g} px, scores by up to {found.score:.2g}")

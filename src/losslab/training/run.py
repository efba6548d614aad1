"""`run(cfg)`: one training run, start to finish, in its own folder."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from losslab.config.validation import validate
from losslab.distributed import World, broadcast, init_world, launched_world
from losslab.errors import LosslabError
from losslab.modeling.runtime import resolve_device
from losslab.reporting.comparison import run_title
from losslab.reporting.curves import plot_loss_curves
from losslab.reporting.history import History, write_json, write_metrics
from losslab.reporting.loggers import build_loggers
from losslab.training.checkpoints import restore, save_epoch_checkpoints, training_state
from losslab.training.epoch import enter_phase, epoch_line, run_epoch
from losslab.training.loop import NonFiniteLossError
from losslab.training.resume import open_checkpoint, resumed_config
from losslab.training.run_folder import prepare_run_dir, resolve_run_dir
from losslab.training.session import Session, setup
from losslab.training.stopping import EarlyStopping
from losslab.training.summary import report, run_summary

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What `run` returns: the per-epoch rows of metrics.csv, the run folder and the final status."""

    history: list[dict]
    run_dir: Path
    status: str
    summary: dict = field(default_factory=dict)


def run(cfg: DictConfig, overrides: list[str] | None = None) -> RunResult:
    """Train the configured model; write metrics.csv, loss_curves.png, summary.json, split.json
    and checkpoints into the run folder as the epochs go. Returns the history and final status.

    With `resume=RUN_DIR` the run in RUN_DIR continues from its checkpoints/last.pt with its own
    config; `overrides` (the command line's) may change only RESUMABLE_KEYS, e.g. to extend it.
    A diverged run returns normally with status "diverged"; any other failure is re-raised after
    summary.json records it (status "failed" or "interrupted").

    Under torchrun every process trains its share of each batch and only the first (rank 0) writes.
    """
    world = init_world(resolve_device(cfg.trainer.device, launched_world()).type)
    cfg, run_dir, checkpoint = open_run(cfg, overrides or [], world)
    title = run_title(OmegaConf.to_container(cfg, resolve=True))
    history = History(cfg.trainer.monitor, cfg.trainer.mode)
    session: Session | None = None
    loggers: list = []
    status, error = "completed", None
    started = time.monotonic()
    try:
        if world.main:
            loggers = build_loggers(list(cfg.logger.backends), run_dir, OmegaConf.to_container(cfg, resolve=True),
                                    mlflow_uri=cfg.logger.mlflow_tracking_uri,
                                    experiment=cfg.logger.mlflow_experiment)
        session = setup(cfg, run_dir, world, start_weights=checkpoint is None)
        first_epoch = 1 if checkpoint is None else restore(session, checkpoint, history) + 1
        if train_epochs(cfg, session, history, run_dir, title, loggers, first_epoch):
            status = "stopped_early"
    except NonFiniteLossError as nonfinite:
        status, error = "diverged", str(nonfinite)
        log.error("diverged: %s; checkpoints/last.pt keeps the last finished epoch.", nonfinite)
    except KeyboardInterrupt:
        status, error = "interrupted", "stopped by the user (Ctrl-C); continue with: train resume=" + str(run_dir)
        raise
    except Exception as failure:
        status, error = "failed", str(failure) if isinstance(failure, LosslabError) else repr(failure)
        raise
    finally:
        summary = run_summary(history, status, error, time.monotonic() - started,
                              session.device if session else None,
                              list(session.data.classes) if session else None,
                              session.class_weights if session else None, run_dir)
        if world.main:
            finish_run_dir(run_dir, summary, history, title, loggers)
    return RunResult(history=history.rows, run_dir=run_dir, status=status, summary=summary)


def open_run(cfg: DictConfig, overrides: list[str], world: World) -> tuple[DictConfig, Path, dict | None]:
    """The config to train with, the run folder and, when resuming, the checkpoint to continue from."""
    if cfg.get("resume"):
        run_dir = Path(cfg.resume)
        checkpoint = open_checkpoint(run_dir)
        return resumed_config(checkpoint, overrides, run_dir), run_dir, checkpoint
    validate(cfg)
    run_dir = Path(broadcast(str(resolve_run_dir(cfg))))  # the other processes' Hydra folders are scratch
    if world.main:
        prepare_run_dir(run_dir, cfg)
    return cfg, run_dir, None


def train_epochs(cfg: DictConfig, session: Session, history: History, run_dir: Path, title: str, loggers: list,
                 first_epoch: int) -> bool:
    """Train from `first_epoch` to trainer.max_epochs, writing every epoch's files; True if it stopped early."""
    early = cfg.trainer.early_stopping
    stopping = EarlyStopping(early.monitor, early.mode, early.patience, early.min_delta) if early.enabled else None
    main = session.world.main
    for epoch in range(first_epoch, cfg.trainer.max_epochs + 1):
        enter_phase(session, epoch)
        # Every process decides (best epoch, early stopping, divergence) from the main process's row.
        row = broadcast(run_epoch(session, epoch, cfg.trainer.seed, cfg.trainer.progress and main))
        improved = history.improves(row)
        log.info(epoch_line(row, cfg.trainer.max_epochs, improved))
        if not math.isfinite(row["val/loss"]):
            history.add(row)  # logged, but last.pt keeps the last good epoch
            raise NonFiniteLossError(epoch, len(session.loaders["train"]),
                                     {k[4:]: v for k, v in row.items() if k.startswith("val/")})
        # Checkpoint first: an interruption at any point leaves last.pt, history and metrics.csv agreeing.
        if cfg.trainer.checkpoints and main:
            save_epoch_checkpoints(run_dir, training_state(session, [*history.rows, row], cfg), improved)
        history.add(row)
        if main:
            write_metrics(run_dir / "metrics.csv", history.rows)
            plot_loss_curves(history.rows, run_dir / "loss_curves.png", title, history.best_epoch)
        for logger in loggers:
            logger.log_epoch(row)
        if stopping is not None and stopping.should_stop(history.rows):
            log.info("early stopping at epoch %d: %s", epoch, stopping.reason(history.rows))
            return True
    return False


def finish_run_dir(run_dir: Path, summary: dict, history: History, title: str, loggers: list) -> None:
    """summary.json, the final metrics.csv and curves, the loggers' last words and the console report."""
    write_json(run_dir / "summary.json", summary)
    if history.rows:
        write_metrics(run_dir / "metrics.csv", history.rows)
        plot_loss_curves(history.rows, run_dir / "loss_curves.png", title, history.best_epoch)
    artifacts = [run_dir / name for name in ("loss_curves.png", "metrics.csv", "summary.json")]
    for logger in loggers:
        logger.log_images([run_dir / "loss_curves.png"], len(history.rows))
        logger.close(summary, artifacts)
    report(summary, run_dir)

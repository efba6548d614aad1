"""run(cfg): wire data, model, optimizer and the epoch loop, and write the run folder."""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
import torchvision
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from losslab.checkpoint import load_checkpoint, mirror_checkpoint, save_checkpoint
from losslab.config import unset_data_keys, validate
from losslab.data import DetectionData, build_datasets, count_classes, make_loaders
from losslab.data.split import write_split
from losslab.distributed import World, broadcast, init_world, launched_world
from losslab.engine import NonFiniteLossError, SkipBudget, detection_metrics, train_one_epoch, validation_loss
from losslab.errors import LosslabError
from losslab.history import EarlyStopping, History, diagnose, write_json, write_metrics
from losslab.loggers import build_loggers
from losslab.losses import ComponentLosses, build_losses, class_weights
from losslab.losses.schedule import LossSchedule, Phase
from losslab.models import build_model, get_losses, loss_choices, set_losses
from losslab.plots import plot_loss_curves, run_title

log = logging.getLogger(__name__)

SHORT_NAMES = {"classification": "cls", "box_regression": "box", "objectness": "obj",
               "rpn_box_regression": "rpn_box", "mask": "mask"}


@dataclass
class RunResult:
    """What `run` returns: the per-epoch rows of metrics.csv, the run folder and the final status."""

    history: list[dict]
    run_dir: Path
    status: str
    summary: dict = field(default_factory=dict)


def build_data(cfg: DictConfig) -> DetectionData:
    """The configured dataset, split and augmented (train split only).

    Bad data raises a LosslabError here, before split.json or anything else of the run is written.
    """
    unset = unset_data_keys(cfg)
    if unset:
        raise LosslabError(f"{unset}.")
    data = build_datasets(
        OmegaConf.to_container(cfg.data),
        OmegaConf.to_container(cfg.split),
        OmegaConf.to_container(cfg.augment),
    )
    if cfg.model.arch == "mask_rcnn" and not data.has_masks:
        raise LosslabError(f"model=mask_rcnn learns instance masks, but data={cfg.data.name} has none (VOC has boxes "
                           "only; COCO needs 'segmentation' polygons or RLE). Use model=faster_rcnn or "
                           "model=retinanet, or data with masks.")
    return data


def build_dataloaders(cfg: DictConfig, data: DetectionData | None = None, world: World | None = None
                      ) -> dict[str, DataLoader]:
    """{"train", "val", "test"} DataLoaders yielding (images, targets) as torchvision expects;
    under torchrun each process loads its share of every split."""
    data = data or build_data(cfg)
    world = world or launched_world()
    device = resolve_device(cfg.trainer.device, world)
    return make_loaders(data, cfg.data.batch_size, cfg.data.num_workers, seed=cfg.trainer.seed,
                        pin_memory=device.type == "cuda", world=world)


def build_optimizer(optimizer_cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer over the trainable parameters; with `exempt_norm_and_bias` the
    one-dimensional ones (biases, normalisation weights) get no weight decay."""
    options = OmegaConf.to_container(optimizer_cfg, resolve=True)
    optimizer_class = get_class(options.pop("_target_"))
    exempt = options.pop("exempt_norm_and_bias")
    params = [p for p in model.parameters() if p.requires_grad]
    if exempt and "weight_decay" in options:
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return optimizer_class(params, **options)


@dataclass
class Schedulers:
    """The configured lr scheduler, when it steps, and the per-step warmup in front of it."""

    main: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    per_step: bool
    warmup: torch.optim.lr_scheduler.LRScheduler | None

    @property
    def each_step(self) -> list:
        """Schedulers to step after every optimizer step."""
        return [s for s in (self.warmup, self.main if self.per_step else None) if s is not None]

    def end_epoch(self, monitored: float) -> None:
        if self.per_step:
            return
        if isinstance(self.main, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.main.step(monitored)
        else:
            self.main.step()

    def state_dict(self) -> dict:
        return {"main": self.main.state_dict(), "warmup": self.warmup.state_dict() if self.warmup else None}

    def load_state_dict(self, state: dict) -> None:
        self.main.load_state_dict(state["main"])
        if self.warmup is not None and state.get("warmup"):
            self.warmup.load_state_dict(state["warmup"])


def build_schedulers(scheduler_cfg: DictConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Schedulers:
    """The configured scheduler, and a per-step linear warmup over the first
    `warmup_epochs` x `steps_per_epoch` steps (None when that is 0).

    Both are chainable torch schedulers: each multiplies the current lr, so during warmup the
    effective lr is base_lr x epoch factor x warmup factor.
    """
    options = OmegaConf.to_container(scheduler_cfg, resolve=True)
    warmup_epochs, warmup_factor = options.pop("warmup_epochs"), options.pop("warmup_factor")
    per_step = options.pop("interval") == "step"
    warmup_iters = round(warmup_epochs * steps_per_epoch)
    main = instantiate(options, optimizer=optimizer)
    warmup = None
    if warmup_iters > 0:
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=warmup_factor, total_iters=warmup_iters)
    return Schedulers(main, per_step, warmup)


def resolve_device(name: str, world: World | None = None) -> torch.device:
    """The device `trainer.device` names; under torchrun, "auto" and "cuda" mean this process's GPU."""
    world = world or launched_world()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise LosslabError(f"trainer.device={name!r} is not a device; expected auto, cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LosslabError(f"trainer.device={name} but CUDA is not available here; use trainer.device=cpu or auto.")
    if device.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def resolve_run_dir(cfg: DictConfig) -> Path:
    """cfg.run_dir if set, else Hydra's output folder, else a new outputs/DATE/TIME."""
    if cfg.get("run_dir"):
        return Path(cfg.run_dir)
    if HydraConfig.initialized():
        try:
            return Path(HydraConfig.get().runtime.output_dir)
        except Exception:  # composed with the compose API: there is no output folder
            pass
    return Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S-%f")


def prepare_run_dir(run_dir: Path, cfg: DictConfig) -> None:
    if (run_dir / "metrics.csv").exists():
        raise LosslabError(f"run folder {run_dir} already holds a run (metrics.csv); choose another run_dir "
                           "so nothing is overwritten.")
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.exists():  # Hydra writes it for `train`; the Python API writes it here
        OmegaConf.save(cfg, config_file)


@dataclass
class Session:
    """Everything a run trains with, built from the config."""

    world: World
    device: torch.device
    data: DetectionData
    loaders: dict[str, DataLoader]
    model: torch.nn.Module  # the detector itself: validation, evaluation and checkpoints use it
    trained: torch.nn.Module  # what the training step calls: the detector, or its DDP wrapper
    precision: str
    scaler: torch.amp.GradScaler | None  # float16 mixed precision only
    optimizer: torch.optim.Optimizer
    schedulers: Schedulers
    schedule: LossSchedule
    phase_losses: dict[int, ComponentLosses]  # by phase number
    reference_losses: ComponentLosses | None  # loss=default, when training uses anything else
    monitor: str  # the metrics.csv column a plateau scheduler watches
    grad_clip_norm: float | None
    skip_budget: SkipBudget | None  # trainer.on_nonfinite=skip
    eval_every: int  # detection metrics every N epochs (0: never)
    score_threshold: float
    class_weights: list[float] | None = None  # weighted_ce with automatic weights
    phase: Phase | None = None  # the phase in force


def setup(cfg: DictConfig, run_dir: Path, world: World) -> Session:
    """Seed, build data (writing split.json), model, optimizer, schedulers and every loss phase."""
    device = resolve_device(cfg.trainer.device, world)
    torch.manual_seed(cfg.trainer.seed)
    data = build_data(cfg)
    if world.main:
        write_split(run_dir / "split.json", data.split_ids, cfg.split.seed)
    loaders = build_dataloaders(cfg, data, world)
    arch = cfg.model.arch
    choices, weights = loss_choices(cfg.loss)
    schedule = LossSchedule(choices, OmegaConf.to_container(cfg.loss.schedule.phases, resolve=True),
                            cycle=cfg.loss.schedule.cycle)
    every_choice = [choices] + [phase.choices for phase in schedule.phases]
    counts = count_classes(data.train, len(data.classes)) if needs_class_counts(every_choice) else None
    model = build_model(cfg, num_classes=len(data.classes), class_counts=counts).to(device)
    trained = prepare_for_speed(model, cfg.trainer, device, world)
    # Build every phase's losses now so that a bad choice fails before any training.
    phase_losses = {phase.number: build_losses(arch, phase.choices, weights, counts) for phase in schedule.phases}
    trains_default = not schedule.phases and _is_default(choices, weights)
    reference = None if trains_default else build_losses(arch, {}, {})
    optimizer = build_optimizer(cfg.optimizer, model)
    schedulers = build_schedulers(cfg.scheduler, optimizer, steps_per_epoch=len(loaders["train"]))
    log.info("run folder %s | %s/%s, %d classes, %d train / %d val / %d test images, device %s",
             run_dir, arch, cfg.model.backbone, len(data.classes),
             len(data.train), len(data.val), len(data.test), device)
    auto_weights = None
    if counts is not None:
        auto_weights = class_weights("auto", counts).tolist()
        per_class = zip(data.classes, counts, auto_weights[1:], strict=True)
        log.info("weighted_ce weights (auto, from train class counts): background 1, %s",
                 ", ".join(f"{name} {weight:.3g} ({count} objects)" for name, count, weight in per_class))
    skip_budget = SkipBudget(cfg.trainer.max_skipped_batches) if cfg.trainer.on_nonfinite == "skip" else None
    scaler = torch.amp.GradScaler(device.type) if cfg.trainer.precision == "16-mixed" else None
    return Session(world, device, data, loaders, model, trained, cfg.trainer.precision, scaler, optimizer,
                   schedulers, schedule, phase_losses, reference,
                   cfg.trainer.monitor, cfg.trainer.grad_clip_norm, skip_budget, cfg.eval.every,
                   cfg.eval.score_threshold, auto_weights)


def prepare_for_speed(model: torch.nn.Module, trainer: DictConfig, device: torch.device, world: World
                      ) -> torch.nn.Module:
    """Apply the trainer's speed options to `model` in place; return what the training step should call
    (a DistributedDataParallel wrapper under torchrun, else the model)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = trainer.cudnn_benchmark
    if trainer.channels_last:
        model.to(memory_format=torch.channels_last)
    if trainer.compile:
        model.backbone.compile()  # in place: state_dict keys stay those of the plain model
    if not world.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def needs_class_counts(choices: list[dict[str, dict]]) -> bool:
    return any(c.get("cls", {}).get("name") == "weighted_ce" and c["cls"].get("weights", "auto") == "auto"
               for c in choices)


def _is_default(choices: dict[str, dict], weights: dict[str, float]) -> bool:
    return all(c.get("name") == "default" for c in choices.values()) and all(w == 1.0 for w in weights.values())


def enter_phase(session: Session, epoch: int) -> None:
    """At the start of `epoch`, switch losses and lr factor if a new loss phase begins."""
    phase = session.schedule.phase_at(epoch)
    if phase is None or phase == session.phase:
        return
    previous_factor = session.phase.lr_factor if session.phase else 1.0
    for group in session.optimizer.param_groups:
        group["lr"] *= phase.lr_factor / previous_factor
    set_losses(session.model, session.phase_losses[phase.number])
    session.phase = phase
    log.info("epoch %d: loss phase %d (%s), lr factor %g", epoch, phase.number,
             ", ".join(f"{k}={v['name']}" for k, v in phase.choices.items() if v.get("name") != "default"),
             phase.lr_factor)


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
    checkpoint = None
    if cfg.get("resume"):
        run_dir = Path(cfg.resume)
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise LosslabError(f"resume={run_dir}: there is no checkpoints/last.pt in that folder; expected the "
                               "folder of a losslab run that finished at least one epoch (outputs/DATE/TIME).")
        checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        cfg = resumed_config(checkpoint, overrides or [], run_dir)
    else:
        validate(cfg)
        run_dir = Path(broadcast(str(resolve_run_dir(cfg))))  # the other processes' Hydra folders are scratch
        if world.main:
            prepare_run_dir(run_dir, cfg)
    title = run_title(OmegaConf.to_container(cfg, resolve=True))
    history = History(cfg.trainer.monitor, cfg.trainer.mode)
    early = cfg.trainer.early_stopping
    stopping = EarlyStopping(early.monitor, early.mode, early.patience, early.min_delta) if early.enabled else None
    session = None
    loggers: list = []
    status, error = "completed", None
    started = time.monotonic()
    try:
        if world.main:
            loggers = build_loggers(list(cfg.logger.backends), run_dir, OmegaConf.to_container(cfg, resolve=True),
                                    mlflow_uri=cfg.logger.mlflow_tracking_uri,
                                    experiment=cfg.logger.mlflow_experiment)
        session = setup(cfg, run_dir, world)
        first_epoch = 1 if checkpoint is None else restore(session, checkpoint, history) + 1
        for epoch in range(first_epoch, cfg.trainer.max_epochs + 1):
            enter_phase(session, epoch)
            # Every process decides (best epoch, early stopping, divergence) from the main process's row.
            row = broadcast(run_epoch(session, epoch, cfg.trainer.seed, cfg.trainer.progress and world.main))
            improved = history.improves(row)
            log.info(_epoch_line(row, cfg.trainer.max_epochs, improved))
            if not math.isfinite(row["val/loss"]):
                history.add(row)  # logged, but last.pt keeps the last good epoch
                raise NonFiniteLossError(epoch, len(session.loaders["train"]),
                                         {k[4:]: v for k, v in row.items() if k.startswith("val/")})
            # Checkpoint first: an interruption at any point leaves last.pt, history and metrics.csv agreeing.
            if cfg.trainer.checkpoints and world.main:
                _save_checkpoints(run_dir, session, [*history.rows, row], cfg, improved)
            history.add(row)
            if world.main:
                write_metrics(run_dir / "metrics.csv", history.rows)
                plot_loss_curves(history.rows, run_dir / "loss_curves.png", title, history.best_epoch)
            for logger in loggers:
                logger.log_epoch(row)
            if stopping is not None and stopping.should_stop(history.rows):
                status = "stopped_early"
                log.info("early stopping at epoch %d: %s", epoch, stopping.reason(history.rows))
                break
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
        summary = _summary(history, status, error, time.monotonic() - started, session, run_dir)
        if world.main:
            _finish_run_dir(run_dir, summary, history, title, loggers)
    return RunResult(history=history.rows, run_dir=run_dir, status=status, summary=summary)


def _finish_run_dir(run_dir: Path, summary: dict, history: History, title: str, loggers: list) -> None:
    """summary.json, the final metrics.csv and curves, the loggers' last words and the console report."""
    write_json(run_dir / "summary.json", summary)
    if history.rows:
        write_metrics(run_dir / "metrics.csv", history.rows)
        plot_loss_curves(history.rows, run_dir / "loss_curves.png", title, history.best_epoch)
    artifacts = [run_dir / name for name in ("loss_curves.png", "metrics.csv", "summary.json")]
    for logger in loggers:
        logger.log_images([run_dir / "loss_curves.png"], len(history.rows))
        logger.close(summary, artifacts)
    _report(summary, run_dir)


# What a resumed run may change: how long it trains and where, never what it trains.
RESUMABLE_KEYS = ("trainer.max_epochs", "trainer.progress", "trainer.device", "data.num_workers")


def resumed_config(checkpoint: dict, overrides: list[str], run_dir: Path) -> DictConfig:
    """The run's own config from its checkpoint, with the allowed command-line overrides applied."""
    cfg = OmegaConf.create(checkpoint["config"])
    changes = [o for o in overrides if not o.startswith(("resume=", "hydra.", "hydra/"))]
    refused = [o for o in changes if o.split("=", 1)[0].lstrip("+~") not in RESUMABLE_KEYS]
    if refused:
        raise LosslabError(f"resume={run_dir} continues that run with its own config; {', '.join(refused)} would "
                           f"change what it trains. Only {', '.join(RESUMABLE_KEYS)} may be given when resuming; "
                           "start a new run for other changes.")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(changes))
    cfg.resume = str(run_dir)
    validate(cfg)
    if checkpoint["epoch"] >= cfg.trainer.max_epochs:
        raise LosslabError(f"the run in {run_dir} already finished epoch {checkpoint['epoch']} of "
                           f"trainer.max_epochs={cfg.trainer.max_epochs}; to train longer, resume with a larger "
                           "trainer.max_epochs.")
    return cfg


def restore(session: Session, checkpoint: dict, history: History) -> int:
    """Load weights, optimizer, schedulers, random streams and history; return the last finished epoch."""
    session.model.load_state_dict(checkpoint["model"])
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    session.schedulers.load_state_dict(checkpoint["scheduler"])
    if session.scaler is not None and checkpoint.get("scaler"):
        session.scaler.load_state_dict(checkpoint["scaler"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"])
    session.loaders["train"].generator.set_state(rng["train_loader"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    for row in checkpoint["history"]:
        history.add(row)
    epoch = checkpoint["epoch"]
    # The optimizer state already carries the phase's lr factor: switch the losses, not the lr.
    session.phase = session.schedule.phase_at(epoch)
    if session.phase is not None:
        set_losses(session.model, session.phase_losses[session.phase.number])
    log.info("resuming after epoch %d: metrics.csv keeps epochs 1-%d", epoch, epoch)
    return epoch


def run_epoch(session: Session, epoch: int, seed: int, progress: bool) -> dict:
    """Train one epoch, measure the validation loss, step the epoch scheduler; the metrics.csv row."""
    start = time.monotonic()
    train_loader = session.loaders["train"]
    if hasattr(train_loader.sampler, "set_epoch"):  # DistributedSampler: a new shuffle every epoch
        train_loader.sampler.set_epoch(epoch)
    train_losses = train_one_epoch(session.trained, session.optimizer, train_loader, session.device,
                                   epoch, progress=progress, step_schedulers=session.schedulers.each_step,
                                   grad_clip_norm=session.grad_clip_norm, skip_budget=session.skip_budget,
                                   precision=session.precision, scaler=session.scaler)
    lr = session.optimizer.param_groups[0]["lr"]  # the rate of the epoch's last step
    val_losses = validation_loss(session.model, session.loaders["val"], session.device, seed=seed,
                                 progress=progress, precision=session.precision)
    reference = val_losses
    if session.reference_losses is not None:  # the same weights scored by loss=default, for fair comparison
        trained_with = get_losses(session.model)
        set_losses(session.model, session.reference_losses)
        try:
            reference = validation_loss(session.model, session.loaders["val"], session.device, seed=seed,
                                        precision=session.precision)
        finally:
            set_losses(session.model, trained_with)
    phase = {"phase": session.phase.number} if session.phase else {}
    skipped = {"skipped_batches": session.skip_budget.skipped} if session.skip_budget else {}
    row = {"epoch": epoch, **phase, "lr": lr, **_prefixed("train", train_losses), **_prefixed("val", val_losses),
           **{f"val/ref_{name}": value for name, value in reference.items()}, **skipped,
           "time_s": round(time.monotonic() - start, 3)}
    if session.eval_every and epoch % session.eval_every == 0:
        metrics = detection_metrics(session.model, session.loaders["val"], session.data.classes,
                                    session.score_threshold, session.device, progress, session.precision)
        row |= {f"val/{name}": value for name, value in metrics.items()}
        row["time_s"] = round(time.monotonic() - start, 3)
    session.schedulers.end_epoch(row[session.monitor])
    return row


def _prefixed(split: str, losses: dict[str, float]) -> dict[str, float]:
    return {f"{split}/{name}": value for name, value in losses.items()}


def _save_checkpoints(run_dir: Path, session: Session, rows: list[dict], cfg: DictConfig, improved: bool) -> None:
    state = {
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.schedulers.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler is not None else None,
        "rng": {"torch": torch.get_rng_state(), "train_loader": session.loaders["train"].generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if session.device.type == "cuda" else None},
        "epoch": rows[-1]["epoch"],
        "history": rows,
        "config": OmegaConf.to_yaml(cfg),
        "classes": list(session.data.classes),
        "category_ids": list(session.data.category_ids),
    }
    last = run_dir / "checkpoints" / "last.pt"
    save_checkpoint(last, state)
    if improved:
        mirror_checkpoint(last, run_dir / "checkpoints" / "best.pt")


def _epoch_line(row: dict, max_epochs: int, improved: bool) -> str:
    parts = [f"epoch {row['epoch']}/{max_epochs}" + (f" (phase {row['phase']})" if "phase" in row else ""),
             f"train {row['train/loss']:.4f}", f"val {row['val/loss']:.4f}{' *' if improved else ''}"]
    if row["val/ref_loss"] != row["val/loss"]:
        parts.append(f"ref {row['val/ref_loss']:.4f}")
    components = [name for key in row if key.startswith("val/") and (name := key[4:]) in SHORT_NAMES]
    parts.append(" ".join(f"{SHORT_NAMES[c]} {row[f'train/{c}']:.3f}/{row[f'val/{c}']:.3f}" for c in components))
    if "val/mAP" in row:
        parts.append(f"mAP {row['val/mAP']:.3f} (50: {row['val/mAP50']:.3f})"
                     + (f" mask {row['val/mask_mAP']:.3f}" if "val/mask_mAP" in row else ""))
    parts += [f"lr {row['lr']:.3g}", f"{row['time_s']:.1f}s"]
    return " | ".join(parts)


def _summary(history: History, status: str, error: str | None, wall_time: float, session: Session | None,
             run_dir: Path) -> dict:
    device = session.device if session else None
    return {
        "status": status,
        "error": error,
        "epochs_run": len(history.rows),
        "stopped_epoch": history.rows[-1]["epoch"] if status == "stopped_early" else None,
        "monitor": history.monitor,
        "best_epoch": history.best_epoch,
        "best": history.best or {},
        "last": history.rows[-1] if history.rows else {},
        "best_mAP": max((row["val/mAP"] for row in history.rows if "val/mAP" in row), default=None),
        "diagnosis": diagnose(history.rows),
        "wall_time_s": round(wall_time, 2),
        "device": None if device is None else torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "classes": list(session.data.classes) if session else None,
        "class_weights": session.class_weights if session else None,
        "run_dir": str(run_dir),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "losslab": _version()},
    }


def _report(summary: dict, run_dir: Path) -> None:
    """The closing console line; a failure is reported by whoever handles the exception."""
    if summary["status"] == "failed":
        return
    best = summary["best"]
    log.info("%s after %d epochs | best epoch %s, val loss %s%s | %s | curves: %s",
             summary["status"], summary["epochs_run"], summary["best_epoch"],
             f"{best['val/loss']:.4f}" if "val/loss" in best else "n/a",
             f", mAP {best['val/mAP']:.3f}" if "val/mAP" in best else
             f", best mAP {summary['best_mAP']:.3f}" if summary["best_mAP"] is not None else "",
             summary["diagnosis"]["text"], run_dir / "loss_curves.png")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("losslab")
    except PackageNotFoundError:
        return "unknown"

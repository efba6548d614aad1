"""Everything a run trains with, built once from its plan: data and loaders, the model and its losses for
every loss phase, the optimizer and schedule, and the training controls."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from losslab.config.plan import Plan
from losslab.data.datasets import DetectionData
from losslab.data.images import counted
from losslab.data.segmentation import SegmentationData
from losslab.data.split import write_split
from losslab.distributed import World, broadcast
from losslab.losses.build import ComponentLosses
from losslab.losses.catalogue import WITH_BACKGROUND
from losslab.losses.components import class_weights, needs_class_counts
from losslab.losses.schedule import LossSchedule, Phase
from losslab.losses.segmentation_build import SegmentationLosses
from losslab.modeling.heads import set_losses
from losslab.modeling.runtime import resolve_device
from losslab.tasks import Task
from losslab.training.balance import balance_every_phase
from losslab.training.builders import build_data, build_dataloaders
from losslab.training.data_audit import audit_run_data
from losslab.training.grad_shares import ProbeBatch, check_probed, draw_probe
from losslab.training.loop import SkipBudget
from losslab.training.optim import Schedulers, build_optimizer, build_schedulers

log = logging.getLogger(__name__)


@dataclass
class Session:
    """What a run trains with, built from the config."""

    task: Task  # what differs between detection and segmentation
    world: World
    device: torch.device
    data: DetectionData | SegmentationData
    loaders: dict[str, DataLoader]
    model: torch.nn.Module  # the detector (segmenter) itself: validation, evaluation and checkpoints use it
    trained: torch.nn.Module  # what the training step calls: the model, or its DDP wrapper
    precision: str
    scaler: torch.amp.GradScaler | None  # float16 mixed precision only
    optimizer: torch.optim.Optimizer
    schedulers: Schedulers
    schedule: LossSchedule
    phase_losses: dict[int, ComponentLosses | SegmentationLosses]  # by phase number
    reference_losses: ComponentLosses | SegmentationLosses | None  # val/ref_loss's, when training's differ
    monitor: str  # the metrics.csv column a plateau scheduler watches
    grad_clip_norm: float | None
    skip_budget: SkipBudget | None  # trainer.on_nonfinite=skip
    eval_every: int  # detection (segmentation) metrics every N epochs (0: never)
    eval_options: dict  # the plain `eval` section
    class_weights: list[float] | None = None  # weighted_ce with automatic weights
    phase: Phase | None = None  # the phase in force
    start: dict | None = None  # what the weights started from (losslab.modeling.start.load_start_weights)
    grad_probe: ProbeBatch | None = None  # the batch train/grad_share/* is measured on (trainer.grad_shares)
    balanced_weights: dict[str, dict[str, float]] | None = None  # loss.balance=initial's, by phase ("0": the first)


def setup(plan: Plan, run_dir: Path, world: World, resumed: dict | None = None) -> Session:
    """Seed, build data, model with its start weights, every loss phase, optimizer and schedulers, then write
    split.json (so that a bad choice fails first). A resumed run (`resumed`: the checkpoint it continues from) does
    not load its start weights again: the checkpoint's replace them, and the start it recorded is kept."""
    task, sections, model_options = plan.task, plan.sections, plan.model
    device = resolve_device(plan.device, world)
    # Found (or downloaded) first, so that a missing weights file fails before the run writes anything.
    start_file = None if resumed else task.locate_start_weights(model_options)
    torch.manual_seed(plan.seed)
    data = build_data(plan)
    choices, weights = plan.loss_choices, plan.loss_weights
    loss_schedule = sections["loss"]["schedule"]
    schedule = LossSchedule(choices, loss_schedule["phases"], cycle=loss_schedule["cycle"])
    every_choice = [choices] + [phase.choices for phase in schedule.phases]
    counts = task.class_counts(data) if needs_class_counts(every_choice) else None
    # Every phase's losses are built, and user losses tried on a synthetic batch, before anything is written:
    # a bad choice fails at once, leaving only the failed run's summary.
    for checked in task.check_user_losses(model_options, every_choice, len(data.classes), device):
        log.info("user loss loss.%s._target_=%s (%s): imported, and called on a synthetic batch", checked.key,
                 checked.target, checked.origin)
    losses = task.build_losses(model_options, choices, weights, counts, len(data.classes))
    phase_losses = {phase.number: task.build_losses(model_options, phase.choices, weights, counts, len(data.classes))
                    for phase in schedule.phases}
    loaders = build_dataloaders(plan, data, world)
    model = task.build_model(model_options, losses, len(data.classes))
    start = resumed.get("start") if resumed else task.load_start_weights(model, start_file, model_options)
    model = model.to(device)
    probe = None
    if sections["trainer"]["grad_shares"] or plan.loss_balance != "none":
        check_probed(model)
        probe = draw_probe(data.train, sections["data"]["batch_size"], plan.seed, device)
    balanced = None
    if plan.loss_balance == "initial":
        balanced, phase_losses = balance_losses(plan, model, probe, schedule, counts, len(data.classes), resumed)
    trained = prepare_for_speed(model, sections["trainer"], device, world)
    trains_reference = not schedule.phases and task.trains_reference(choices, weights, model_options)
    reference = None if trains_reference else task.reference_losses(model_options)
    optimizer = build_optimizer(sections["optimizer"], model)
    schedulers = build_schedulers(sections["scheduler"], optimizer, steps_per_epoch=len(loaders["train"]))
    if world.main:
        write_split(run_dir / "split.json", data.split_ids, sections["split"]["seed"])
        audit_run_data(data, run_dir)
    log.info("run folder %s | %s/%s, %s, %d train / %d val / %d test images, device %s", run_dir,
             model_options["arch"], model_options["backbone"], counted(len(data.classes), "class", "classes"),
             len(data.train), len(data.val), len(data.test), device)
    advice = None if resumed else task.start_advice(model_options, sections["optimizer"])
    if advice:
        log.warning("%s", advice)
    auto_weights = None
    if counts is not None:
        auto_weights = class_weights(task.weights_key, "auto", counts).tolist()
        _log_class_weights(task, data.classes, counts, auto_weights)
    if plan.eval_every != sections["eval"]["every"]:
        log.info("an evaluated metric (%s) is monitored: evaluating every epoch, not every %d (eval.every)",
                 plan.monitor, sections["eval"]["every"])
    skip_budget = SkipBudget(plan.max_skipped_batches) if plan.max_skipped_batches is not None else None
    scaler = torch.amp.GradScaler(device.type) if plan.precision == "16-mixed" else None
    probe = probe if sections["trainer"]["grad_shares"] and world.main else None  # only the main process's row is kept
    return Session(task, world, device, data, loaders, model, trained, plan.precision, scaler, optimizer,
                   schedulers, schedule, phase_losses, reference, monitor=plan.monitor,
                   grad_clip_norm=plan.grad_clip_norm, skip_budget=skip_budget, eval_every=plan.eval_every,
                   eval_options=sections["eval"], class_weights=auto_weights, start=start, grad_probe=probe,
                   balanced_weights=balanced)


def balance_losses(plan: Plan, model: torch.nn.Module, probe: ProbeBatch, schedule: LossSchedule,
                   counts: list[int] | None, num_classes: int, resumed: dict | None) -> tuple[dict, dict]:
    """loss.balance=initial: the calibrated weights by phase, and every phase's losses built with them; the model
    takes the run's own. A resumed run keeps the weights its run chose (its checkpoint's): measured again, on the
    trained weights, they would change."""
    def build(choices: dict, weights: dict[str, float]):
        return plan.task.build_losses(plan.model, choices, weights, counts, num_classes)

    balanced = resumed["balanced_weights"] if resumed else broadcast(balance_every_phase(
        model, probe, build, plan.loss_choices, plan.loss_weights, schedule, plan.explicit_weights))
    set_losses(model, build(plan.loss_choices, balanced["0"]))
    return balanced, {phase.number: build(phase.choices, balanced[str(phase.number)]) for phase in schedule.phases}


def _log_class_weights(task: Task, classes: list[str], counts: list[int], weights: list[float]) -> None:
    """Log weighted_ce's automatic weights with the train counts they come from, and warn about classes the train
    split has none of."""
    unit = task.counted.removesuffix("s")
    if task.weights_key in WITH_BACKGROUND:  # every class, background included, has a count and a weight
        background, named = [], zip(classes, counts, weights, strict=True)
    else:
        background, named = [f"background {weights[0]:.3g}"], zip(classes, counts, weights[1:], strict=True)
    log.info("weighted_ce weights (auto: scikit-learn's balanced n / (K n_k) over the train split's %s): %s",
             task.counted, ", ".join([*background, *(f"{name} {weight:.3g} ({counted(count, unit)})"
                                                     for name, count, weight in named)]))
    absent = [name for name, count in zip(classes, counts, strict=True) if count == 0]
    if absent:
        log.warning("weighted_ce weights=auto: the train split has no %s of %s; weight 1, which only scales "
                    "their terms in the validation loss (they are never a training target). Give loss.%s.weights "
                    "as a list to choose it.", unit, ", ".join(absent), task.weights_key)


def prepare_for_speed(model: torch.nn.Module, trainer: dict, device: torch.device, world: World
                      ) -> torch.nn.Module:
    """Apply the trainer's speed options to `model` in place; return what the training step should call
    (a DistributedDataParallel wrapper under torchrun, else the model)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = trainer["cudnn_benchmark"]
    if trainer["channels_last"]:
        model.to(memory_format=torch.channels_last)
    if trainer["compile"]:
        model.backbone.compile()  # in place: state_dict keys stay those of the plain model
    if not world.distributed:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


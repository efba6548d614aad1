"""Checks beyond types, run before anything is written: every problem of a config in one LosslabError naming the
keys and what is expected. Optimizer and scheduler keys are checked against the torch class's own signature."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf

from losslab.config.schema import OPTIMIZER_BASE, REQUIRED_DATA_KEYS, SCHEDULER_BASE
from losslab.config.segmentation_checks import SEGMENTATION_METRICS, cross_task_problems, segmentation_problems
from losslab.errors import LosslabError

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
EVAL_BACKENDS = ("pycocotools", "faster_coco_eval")  # losslab.evaluation.metrics.BACKENDS
CHECKPOINT_CHOICES = ("best", "last", "both", "none")
# trainer.checkpoints was a boolean before it named what to keep: stored configs and old habits still say so.
CHECKPOINT_BOOLEANS = {"true": "both", "false": "none"}
EXTEND_CHOICES = ("last_lr", "replan")
DETECTION_METRICS = ("mAP", "mAP50", "mAP75", "mAR100", "precision", "recall", "F1")

# The modules whose classes a config may name as optimizer or scheduler: what a stored config or checkpoint
# names is never imported from anywhere else.
OPTIMIZER_MODULES = ("torch.optim", "lion_pytorch")
SCHEDULER_MODULES = ("torch.optim.lr_scheduler",)


def monitor_choices(arch: str, evaluates: bool = False) -> list[str]:
    """The metrics.csv columns a run of `arch` logs every epoch, which `trainer.monitor` may name."""
    from losslab.losses.catalogue import ARCH_COMPONENTS

    names = ["loss", *ARCH_COMPONENTS[arch]]
    columns = ["lr"] + [f"{prefix}{name}" for prefix in ("train/", "val/", "val/ref_") for name in names]
    if evaluates:
        columns += [f"val/{metric}" for metric in DETECTION_METRICS]
        if arch == "mask_rcnn":
            columns += [f"val/mask_{metric}" for metric in DETECTION_METRICS[:4]]
    return columns


def evaluation_interval(cfg: DictConfig) -> int:
    """How often a run evaluates: eval.every, or every epoch when trainer.monitor or an enabled early stopping
    watches an evaluated metric (val/mAP, ...), which must then have a value every epoch."""
    if (cfg.get("task") or "detection") == "segmentation":
        evaluated = {f"val/{metric}" for metric in SEGMENTATION_METRICS}
    else:
        evaluated = set(monitor_choices(cfg.model.arch, evaluates=True)) - set(monitor_choices(cfg.model.arch))
    stopping = cfg.trainer.early_stopping
    monitors = [cfg.trainer.monitor] + ([stopping.monitor] if stopping.enabled else [])
    return 1 if any(monitor in evaluated for monitor in monitors) else cfg.eval.every


def checkpoint_choice(value: Any) -> str:
    """trainer.checkpoints as one of CHECKPOINT_CHOICES (true and false as they meant: both and none); any other
    value is returned as given, for validation to refuse."""
    text = str(value).lower() if isinstance(value, bool | str) else str(value)
    return CHECKPOINT_BOOLEANS.get(text, text)


def unset_data_keys(cfg: DictConfig) -> str | None:
    """What `data=<name>` needs that is still unset (??? in the config), in one sentence; None when nothing is.

    A COCO annotation file may instead come from split=predefined's split.files.
    """
    unset = [f"data.{key}" for key in cfg.data if OmegaConf.is_missing(cfg.data, key)]
    if cfg.split.get("files") and cfg.split.files.get("train"):
        unset = [key for key in unset if key != "data.annotations"]
    if not unset:
        return None
    needs = REQUIRED_DATA_KEYS.get(cfg.data.name, " and ".join(unset))
    return f"data={cfg.data.name} needs {needs}; not set: {', '.join(unset)}"


def torch_class(section: str, target: Any, modules: tuple[str, ...], kind: type) -> type:
    """The class `<section>._target_` names, imported only from `modules` and only if it is a `kind`."""
    module_name, _, class_name = str(target).rpartition(".")
    example = "AdamW" if section == "optimizer" else "StepLR"
    expected = f"a class of {' or '.join(modules)} (e.g. {modules[0]}.{example})"
    if module_name not in modules:
        raise LosslabError(f"{section}._target_={target}: expected {expected}.")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise LosslabError(f"{section}._target_={target}: no such class ({error}); expected {expected}.") from error
    if not (inspect.isclass(found) and issubclass(found, kind)):
        raise LosslabError(f"{section}._target_={target} is not a {kind.__name__}; expected {expected}.")
    return found


def argument_problems(section: str, options: dict, cls: type, own: dict, given: tuple[str, ...]) -> list[str]:
    """Keys of `options` that `cls` does not take or whose type differs from its default's; required arguments
    missing. `own` are losslab's keys beside them; `given` the arguments losslab passes itself."""
    parameters = {name: p for name, p in inspect.signature(cls).parameters.items()
                  if name not in given and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    problems = []
    for key, value in options.items():
        if key == "_target_" or key in own:
            continue
        if key not in parameters:
            problems.append(f"{section}.{key}: {options['_target_']} has no argument {key!r}; its "
                            f"arguments are {', '.join(parameters)}")
        elif not _fits(parameters[key].default, value):
            problems.append(f"{section}.{key}={value!r}: expected a {type(parameters[key].default).__name__} like "
                            f"its default {parameters[key].default!r}")
    missing = [name for name, p in parameters.items() if p.default is p.empty and name not in options]
    problems += [f"{section}.{name}: {cls.__name__} needs it; add ++{section}.{name}=VALUE" for name in missing]
    return problems


def _fits(default: Any, value: Any) -> bool:
    """Whether `value` has the kind of `default` (numbers for numbers, pairs for tuples); anything fits None."""
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, tuple | list):
        return isinstance(value, tuple | list) and len(value) == len(default)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def optimizer_problems(options: dict) -> list[str]:
    import torch

    try:
        cls = torch_class("optimizer", options.get("_target_"), OPTIMIZER_MODULES, torch.optim.Optimizer)
    except LosslabError as error:
        return [str(error).rstrip(".")]
    problems = argument_problems("optimizer", options, cls, OPTIMIZER_BASE, given=("params",))
    lr = options.get("lr")
    if isinstance(lr, int | float) and not lr > 0:
        problems.append(f"optimizer.lr={float(lr)}: expected a positive learning rate")
    weight_decay = options.get("weight_decay", 0.0)
    if isinstance(weight_decay, int | float) and weight_decay < 0:
        problems.append(f"optimizer.weight_decay={weight_decay}: expected >= 0")
    if not isinstance(options.get("exempt_norm_and_bias"), bool):
        problems.append(f"optimizer.exempt_norm_and_bias={options.get('exempt_norm_and_bias')}: expected true or false")
    return problems


def scheduler_problems(options: dict) -> list[str]:
    import torch

    kinds = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    try:
        cls = torch_class("scheduler", options.get("_target_"), SCHEDULER_MODULES, kinds)
    except LosslabError as error:
        return [str(error).rstrip(".")]
    problems = argument_problems("scheduler", options, cls, SCHEDULER_BASE, given=("optimizer",))
    warmup_epochs, warmup_factor = options.get("warmup_epochs"), options.get("warmup_factor")
    if not (isinstance(warmup_epochs, int | float) and warmup_epochs >= 0):
        problems.append(f"scheduler.warmup_epochs={warmup_epochs}: expected >= 0")
    if not (isinstance(warmup_factor, int | float) and 0 < warmup_factor <= 1):
        problems.append(f"scheduler.warmup_factor={warmup_factor}: expected a factor in (0, 1]")
    if options.get("interval") not in ("epoch", "step"):
        problems.append(f"scheduler.interval={options.get('interval')}: expected epoch or step")
    return problems


def loss_sections(loss: dict) -> list[tuple[str, dict]]:
    """Every component choice of a plain `loss` section, the run's and each schedule phase's, with its key
    ("loss.cls", "loss.schedule.phases[0].losses.mask", ...)."""
    from losslab.losses.catalogue import CATALOGUE

    sections = [(f"loss.{key}", loss[key]) for key in CATALOGUE if key in loss]  # the task's components
    for number, phase in enumerate(loss["schedule"]["phases"]):
        sections += [(f"loss.schedule.phases[{number}].losses.{key}", choice)
                     for key, choice in (phase.get("losses") or {}).items() if key in CATALOGUE]
    return sections


def loss_problems(loss: dict) -> list[str]:
    """Loss choices (the run's and each schedule phase's) that name no loss: an unknown name, `custom` without a
    `_target_`, or a `_target_` beside a built-in loss. A user loss's own checks come when it is built."""
    from losslab.losses.catalogue import CATALOGUE

    problems = []
    for where, choice in loss_sections(loss):
        key, name = where.rsplit(".", 1)[-1], choice.get("name")
        names = ["default", *CATALOGUE[key], "custom"]
        target = choice.get("_target_")
        if name not in names:
            problems.append(f"{where}.name={name}: expected one of {', '.join(names)}")
        elif name == "custom" and target in (None, "", "???"):
            problems.append(f"{where}: a custom loss needs {where}._target_=MODULE.NAME, your loss function or "
                            "class (e.g. myloss.poly1_ce for poly1_ce in ./myloss.py)")
        elif name != "custom" and target is not None:
            problems.append(f"{where}._target_={target}: only loss/{key}=custom takes a _target_; "
                            f"choose loss/{key}=custom for a loss of your own")
    return problems


def detection_problems(cfg: DictConfig) -> list[str]:
    """The model and monitor of a task=detection config."""
    from losslab.modeling.detectors import ARCHS, BACKBONES
    from losslab.modeling.start import start_problems

    problems = []
    if cfg.model.arch in ARCHS and cfg.model.backbone in BACKBONES:
        problems += start_problems(OmegaConf.to_container(cfg.model, resolve=True))
    if cfg.model.arch not in ARCHS:
        problems.append(f"model.arch={cfg.model.arch}: expected one of {', '.join(ARCHS)}")
    if cfg.model.backbone not in BACKBONES:
        problems.append(f"model.backbone={cfg.model.backbone}: expected one of {', '.join(BACKBONES)}")
    if cfg.model.arch in ARCHS:
        choices = monitor_choices(cfg.model.arch, evaluates=True)  # watching one evaluates every epoch
        for key, monitor in (("trainer.monitor", cfg.trainer.monitor),
                             ("trainer.early_stopping.monitor", cfg.trainer.early_stopping.monitor)):
            if monitor not in choices:
                problems.append(f"{key}={monitor}: expected one of {', '.join(choices)}")
    return problems


def validate(cfg: DictConfig) -> None:
    """Checks beyond types: every problem found, in one LosslabError naming the keys and what is expected."""
    from losslab.data.augment_options import validate_augment
    from losslab.data.split import check_split_options
    from losslab.modeling.detectors import ARCHS
    from losslab.modeling.segmenters import SEGMENTATION_ARCHS
    from losslab.reporting.loggers import LOGGERS

    problems = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    check(cfg.trainer.max_epochs >= 1, f"trainer.max_epochs={cfg.trainer.max_epochs}: expected at least 1")
    problems += optimizer_problems(OmegaConf.to_container(cfg.optimizer, resolve=True))
    problems += scheduler_problems(OmegaConf.to_container(cfg.scheduler, resolve=True))
    check(cfg.data.batch_size >= 1, f"data.batch_size={cfg.data.batch_size}: expected at least 1 image per step")
    check(cfg.data.num_workers >= 0, f"data.num_workers={cfg.data.num_workers}: expected 0 or more")
    check(0 < cfg.model.min_size <= cfg.model.max_size,
          f"model.min_size={cfg.model.min_size}, model.max_size={cfg.model.max_size}: "
          "expected 0 < min_size <= max_size")
    problems += validate_augment(OmegaConf.to_container(cfg.augment))
    problems += loss_problems(OmegaConf.to_container(cfg.loss, resolve=True))
    for component, weight in cfg.loss.weights.items():
        check(weight >= 0, f"loss.weights.{component}={weight}: expected >= 0")
    task = cfg.get("task") or "detection"  # runs from before tasks existed are detection runs
    problems += cross_task_problems(task, cfg.model.arch, cfg.data.name, ARCHS, SEGMENTATION_ARCHS)
    if task == "segmentation":
        problems += segmentation_problems(cfg)
    elif cfg.model.arch not in SEGMENTATION_ARCHS:
        problems += detection_problems(cfg)
    try:
        check_split_options(OmegaConf.to_container(cfg.split))
    except LosslabError as error:
        problems.append(str(error).removeprefix("split: ").rstrip("."))
    unset = unset_data_keys(cfg)
    check(unset is None, str(unset))
    trainer, stopping = cfg.trainer, cfg.trainer.early_stopping
    check(trainer.mode in ("min", "max"), f"trainer.mode={trainer.mode}: expected min or max")
    check(stopping.mode in ("min", "max"), f"trainer.early_stopping.mode={stopping.mode}: expected min or max")
    check(stopping.patience >= 0, f"trainer.early_stopping.patience={stopping.patience}: expected 0 or more epochs")
    check(stopping.min_delta >= 0, f"trainer.early_stopping.min_delta={stopping.min_delta}: expected >= 0")
    check(trainer.grad_clip_norm is None or trainer.grad_clip_norm > 0,
          f"trainer.grad_clip_norm={trainer.grad_clip_norm}: expected a positive norm, or null for no clipping")
    check(trainer.on_nonfinite in ("stop", "skip"),
          f"trainer.on_nonfinite={trainer.on_nonfinite}: expected stop or skip")
    check(trainer.precision in PRECISIONS,
          f"trainer.precision={trainer.precision}: expected one of {', '.join(PRECISIONS)}")
    check(checkpoint_choice(trainer.checkpoints) in CHECKPOINT_CHOICES,
          f"trainer.checkpoints={trainer.checkpoints}: expected one of {', '.join(CHECKPOINT_CHOICES)}")
    check(not (trainer.keep_resume_state and checkpoint_choice(trainer.checkpoints) == "none"),
          "trainer.keep_resume_state=true with trainer.checkpoints=none: a run that writes no checkpoint keeps no "
          "resume state; choose best, last or both")
    check(trainer.on_extend in EXTEND_CHOICES,
          f"trainer.on_extend={trainer.on_extend}: expected one of {', '.join(EXTEND_CHOICES)}")
    check(trainer.max_skipped_batches >= 0,
          f"trainer.max_skipped_batches={trainer.max_skipped_batches}: expected 0 or more")
    unknown = [name for name in cfg.logger.backends if name not in LOGGERS]
    check(not unknown, f"logger.backends has {unknown}: expected names among {', '.join(LOGGERS)}")
    check(cfg.eval.every >= 0, f"eval.every={cfg.eval.every}: expected 0 (off) or a number of epochs")
    check(cfg.eval.backend in EVAL_BACKENDS,
          f"eval.backend={cfg.eval.backend}: expected one of {', '.join(EVAL_BACKENDS)}")
    check(0.0 <= cfg.eval.score_threshold <= 1.0,
          f"eval.score_threshold={cfg.eval.score_threshold}: expected a score in [0, 1]")
    check(cfg.sweep.mode in (None, "min", "max"), f"sweep.mode={cfg.sweep.mode}: expected min, max or null")
    if problems:
        raise LosslabError("invalid configuration: " + "; ".join(problems) + ".")

"""Checks beyond types, run before anything is written: every problem of a config in one LosslabError naming the
keys and what is expected, then the run's plan (losslab.config.plan), decided once. Optimizer and scheduler keys
are checked against the torch class's own signature; the task's own checks are its task object's
(losslab.tasks)."""

from __future__ import annotations

import dataclasses
import difflib

from omegaconf import DictConfig, ListConfig, OmegaConf

from losslab.config.compose import config_dir
from losslab.config.data_schema import REQUIRED_DATA_KEYS
from losslab.config.plan import BALANCES, CHECKPOINT_CHOICES, Plan, Stopping, checkpoint_choice
from losslab.config.selection import AUTO, evaluation_interval, settle_selection
from losslab.config.torch_arguments import optimizer_problems, scheduler_problems, trial_problems
from losslab.data.augment_options import validate_augment
from losslab.data.split import DATA_WITH_SPLITS, check_split_options
from losslab.errors import LosslabError
from losslab.evaluation.metrics import BACKENDS
from losslab.losses.catalogue import CATALOGUE
from losslab.losses.components import checked_parameters
from losslab.modeling.runtime import resolve_device
from losslab.reporting.loggers import LOGGERS
from losslab.tasks import Task, config_problems, task_of

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
MODES = ("min", "max", AUTO)
EXTEND_CHOICES = ("last_lr", "replan")


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


def unknown_keys(node: DictConfig | ListConfig, where: str = "") -> list[str]:
    """Keys added with `+` to a typed section that has no such field (`+trainer.max_epoch=3`): Hydra lets a `+`
    key into any section, so each section of the composed config is compared with its schema's fields here. Untyped
    sections are open by design (optimizer and scheduler arguments, checked against torch's signatures; a user
    loss's parameters) and only their typed children are checked."""
    if isinstance(node, ListConfig):
        children = [(f"{where}[{index}]", index) for index in range(len(node))]
    else:
        children = [(f"{where}.{key}" if where else str(key), key) for key in node]
    problems = []
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    if dataclasses.is_dataclass(schema):
        fields = [field.name for field in dataclasses.fields(schema)]
        section, prefix = where or "the config", f"{where}." if where else ""
        for key in (key for key in node if key not in fields):
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"the nearest is {prefix}{close[0]}" if close else f"its keys are {', '.join(fields)}"
            problems.append(f"{prefix}{key}: {section} has no key {key!r}; {hint}")
    for path, key in children:
        child = None if OmegaConf.is_missing(node, key) else node[key]
        if isinstance(child, DictConfig | ListConfig):
            problems += unknown_keys(child, path)
    return problems


def precision_problems(precision: str, device_name: str) -> list[str]:
    """16-mixed is float16 autocast with a GradScaler, a CUDA mode: on a CPU it trains several times slower than
    32, so it is refused there (bf16-mixed runs on either)."""
    if precision != "16-mixed":
        return []
    try:
        device = resolve_device(device_name)
    except LosslabError as error:
        return [str(error).rstrip(".")]
    if device.type == "cuda":
        return []
    return [f"trainer.precision=16-mixed needs CUDA, but trainer.device={device_name} runs on the {device.type} "
            "here; choose trainer.precision=bf16-mixed (CUDA or CPU) or 32"]


def loss_sections(loss: dict) -> list[tuple[str, dict]]:
    """Every component choice of a plain `loss` section, the run's and each schedule phase's, with its key
    ("loss.cls", "loss.schedule.phases[0].losses.mask", ...)."""
    sections = [(f"loss.{key}", loss[key]) for key in CATALOGUE if key in loss]  # the task's components
    for number, phase in enumerate(loss["schedule"]["phases"]):
        sections += [(f"loss.schedule.phases[{number}].losses.{key}", choice)
                     for key, choice in (phase.get("losses") or {}).items() if key in CATALOGUE]
    return sections


def loss_problems(loss: dict) -> list[str]:
    """Loss choices (the run's and each schedule phase's) that name no loss (an unknown name, `custom` without a
    `_target_`, a `_target_` beside a built-in loss) or a parameter the loss does not have or take: checked by the
    loss builder's own check (losslab.losses.components), so a phase that starts late fails before anything runs. A
    user loss's own checks come when it is built."""
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
        elif name not in ("default", "custom"):
            try:
                checked_parameters(key, name, {k: v for k, v in choice.items() if k != "name"})
            except LosslabError as error:
                problems.append(f"{where}: {str(error).rstrip('.')}")
    return problems


def validate(cfg: DictConfig) -> Plan:
    """Check `cfg` beyond types, then decide the run's plan. Every problem found is in one LosslabError naming the
    keys and what is expected."""
    problems = unknown_keys(cfg)

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    sections = OmegaConf.to_container(cfg, resolve=True)  # resolved once: the checks' and the plan's plain values
    task = task_of(cfg)
    settle_selection(task, sections)  # trainer.monitor=auto and the modes that follow it, before the trial build
    check(cfg.trainer.max_epochs >= 1, f"trainer.max_epochs={cfg.trainer.max_epochs}: expected at least 1")
    optimizer, scheduler = sections["optimizer"], sections["scheduler"]
    torch_problems = optimizer_problems(optimizer) + scheduler_problems(scheduler)
    problems += torch_problems or trial_problems(optimizer, scheduler)
    check(cfg.data.batch_size >= 1, f"data.batch_size={cfg.data.batch_size}: expected at least 1 image per step")
    check(cfg.data.num_workers >= 0, f"data.num_workers={cfg.data.num_workers}: expected 0 or more")
    check(0 < cfg.model.min_size <= cfg.model.max_size,
          f"model.min_size={cfg.model.min_size}, model.max_size={cfg.model.max_size}: "
          "expected 0 < min_size <= max_size")
    problems += validate_augment(OmegaConf.to_container(cfg.augment))
    problems += loss_problems(sections["loss"])
    for number, phase in enumerate(cfg.loss.schedule.phases):
        where = f"loss.schedule.phases[{number}]"
        check(phase.epochs >= 1, f"{where}.epochs={phase.epochs}: expected at least 1 epoch per phase")
        check(phase.lr_factor > 0, f"{where}.lr_factor={phase.lr_factor}: expected a positive factor of the "
                                   "learning rate (a factor <= 0 would stop or reverse training)")
    for component, weight in cfg.loss.weights.items():
        check(weight >= 0, f"loss.weights.{component}={weight}: expected >= 0")
    check(balance_of(cfg) in BALANCES, f"loss.balance={balance_of(cfg)}: expected {' or '.join(BALANCES)}")
    problems += config_problems(task, sections)
    try:
        check_split_options(OmegaConf.to_container(cfg.split), own_split=cfg.data.name in DATA_WITH_SPLITS)
    except LosslabError as error:
        problems.append(str(error).removeprefix("split: ").rstrip("."))
    unset = unset_data_keys(cfg)
    check(unset is None, str(unset))
    trainer, stopping = cfg.trainer, cfg.trainer.early_stopping
    check(trainer.mode in MODES, f"trainer.mode={trainer.mode}: expected {' or '.join(MODES)}")
    check(stopping.mode in MODES, f"trainer.early_stopping.mode={stopping.mode}: expected {' or '.join(MODES)}")
    check(stopping.patience >= 0, f"trainer.early_stopping.patience={stopping.patience}: expected 0 or more epochs")
    check(stopping.min_delta >= 0, f"trainer.early_stopping.min_delta={stopping.min_delta}: expected >= 0")
    check(trainer.grad_clip_norm is None or trainer.grad_clip_norm > 0,
          f"trainer.grad_clip_norm={trainer.grad_clip_norm}: expected a positive norm, or null for no clipping")
    check(trainer.on_nonfinite in ("stop", "skip"),
          f"trainer.on_nonfinite={trainer.on_nonfinite}: expected stop or skip")
    check(trainer.precision in PRECISIONS,
          f"trainer.precision={trainer.precision}: expected one of {', '.join(PRECISIONS)}")
    problems += precision_problems(trainer.precision, trainer.device)
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
    check(cfg.eval.backend in BACKENDS,
          f"eval.backend={cfg.eval.backend}: expected one of {', '.join(BACKENDS)}")
    check(0.0 <= cfg.eval.score_threshold <= 1.0,
          f"eval.score_threshold={cfg.eval.score_threshold}: expected a score in [0, 1]")
    check(cfg.sweep.mode in (None, "min", "max"), f"sweep.mode={cfg.sweep.mode}: expected min, max or null")
    if problems:
        raise LosslabError("invalid configuration: " + "; ".join(problems) + ".")
    return plan(task, cfg, sections)


def plan(task: Task, cfg: DictConfig, sections: dict) -> Plan:
    """The decisions of a valid config (`sections`: it resolved to plain values), made once."""
    trainer, stopping = cfg.trainer, cfg.trainer.early_stopping
    selected = sections["trainer"]  # the selection settled: auto resolved (losslab.config.selection)
    choices, weights = task.loss_choices(sections["loss"])
    return Plan(task=task, sections=sections, composed=OmegaConf.to_yaml(cfg), max_epochs=trainer.max_epochs,
                seed=trainer.seed, device=trainer.device, precision=trainer.precision, progress=trainer.progress,
                checkpoints=checkpoint_choice(trainer.checkpoints), keep_resume_state=trainer.keep_resume_state,
                monitor=selected["monitor"], mode=selected["mode"], eval_every=evaluation_interval(task, sections),
                early_stopping=Stopping(selected["early_stopping"]["monitor"], selected["early_stopping"]["mode"],
                                        stopping.patience, stopping.min_delta)
                if stopping.enabled else None,
                grad_clip_norm=trainer.grad_clip_norm,
                max_skipped_batches=trainer.max_skipped_batches if trainer.on_nonfinite == "skip" else None,
                on_extend=trainer.on_extend, loss_choices=choices, loss_weights=weights,
                loss_balance=balance_of(cfg), explicit_weights=explicit_weights(task, weights))


def balance_of(cfg: DictConfig) -> str:
    return cfg.loss.get("balance", "none")  # a config stored before loss.balance existed trained without it


def explicit_weights(task: Task, weights: dict[str, float]) -> tuple[str, ...]:
    """The components whose loss.weights differ from the presets' (conf/loss/by_task/TASK/base.yaml): weights the
    user chose, which loss.balance leaves as they are."""
    presets = OmegaConf.load(config_dir() / "loss" / "by_task" / task.name / "base.yaml").weights
    return tuple(name for name, weight in weights.items() if weight != presets.get(name))


def plan_of(overrides: list[str]) -> Plan:
    """The validated plan of `overrides` composed as `train` composes them (the commands that read a config without
    training: `losslab data`, `show-augment`); a LosslabError where they do not compose or validate."""
    from hydra.errors import HydraException

    from losslab.config.compose import compose_config

    try:
        cfg = compose_config(overrides)
    except HydraException as error:
        raise LosslabError(f"the overrides {' '.join(overrides)} do not compose: {error}") from error
    return validate(cfg)

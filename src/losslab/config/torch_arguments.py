"""Optimizer and scheduler sections checked against the torch class they name: the class is imported only from
the modules a config may name, and every key must be one of its signature's arguments, of its default's kind."""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from typing import Any

import torch

from losslab.config.schema import OPTIMIZER_BASE, SCHEDULER_BASE
from losslab.errors import LosslabError

# The modules whose classes a config may name as optimizer or scheduler: what a stored config or checkpoint
# names is never imported from anywhere else.
OPTIMIZER_MODULES = ("torch.optim", "lion_pytorch")
SCHEDULER_MODULES = ("torch.optim.lr_scheduler",)


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


def built(section: str, options: dict, own: dict, build) -> tuple[Any, list[str]]:
    """`build(cls, arguments)` run on the section's class and torch arguments, so that torch's own checks of their
    values (betas below 1, a plateau factor below 1, ...) run before anything is written: (what it built, []), or
    (None, [torch's refusal naming the keys its message names, else every argument given])."""
    module_name, _, class_name = options["_target_"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    arguments = {key: value for key, value in options.items() if key != "_target_" and key not in own}
    try:
        with warnings.catch_warnings():  # a trial build: torch's deprecation notes are for the run itself
            warnings.simplefilter("ignore")
            return build(cls, arguments), []
    except Exception as error:  # torch raises ValueError, TypeError, ... for a value it refuses
        message = str(error).strip().rstrip(".")
        named = [key for key in arguments
                 if re.search(rf"\b({re.escape(key)}|{re.escape(key.rstrip('s'))})", message, re.IGNORECASE)]
        keys = ", ".join(f"{section}.{key}={arguments[key]!r}" for key in named or arguments)
        return None, [f"{keys}: {options['_target_']} refuses {'it' if len(named or arguments) == 1 else 'them'} "
                      f"({message})"]


def trial_problems(optimizer: dict, scheduler: dict) -> list[str]:
    """The optimizer and scheduler built on one dummy parameter: torch's own value checks, as problems. Called once
    their keys and types are right."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    built_optimizer, problems = built("optimizer", optimizer, OPTIMIZER_BASE,
                                      lambda cls, arguments: cls([parameter], **arguments))
    # A refused optimizer still lets the scheduler's values be checked, on a plain one.
    built_optimizer = built_optimizer or torch.optim.SGD([parameter], lr=0.1)
    _, refused = built("scheduler", scheduler, SCHEDULER_BASE,
                       lambda cls, arguments: cls(built_optimizer, **arguments))
    return problems + refused


def optimizer_problems(options: dict) -> list[str]:
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

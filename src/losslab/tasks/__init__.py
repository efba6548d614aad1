"""The tasks losslab trains, each one object behind the `Task` protocol (losslab.tasks.base), one module each:
detection and segmentation. What differs between them (components and losses, class counts, models and their
start weights, metrics, monitors, config checks, evaluate/predict/export/show-augment) lives in its task's module;
nothing outside this package compares a task name. A new task is a new module here, its configs and its tests.

Layer: imports losses, data, modeling, evaluation and reporting; imported by config (validation puts the task
into the run's plan), training and commands.
"""

from __future__ import annotations

from losslab.errors import LosslabError
from losslab.tasks.base import Task
from losslab.tasks.detection import DETECTION
from losslab.tasks.segmentation import SEGMENTATION

TASKS: tuple[Task, ...] = (DETECTION, SEGMENTATION)  # the first is the default: runs from before tasks existed


def task_named(name: str | None) -> Task:
    """The task `task=NAME` chooses (None: the default, detection)."""
    for task in TASKS:
        if task.name == (name or TASKS[0].name):
            return task
    raise LosslabError(f"task={name}: expected one of {', '.join(task.name for task in TASKS)}.")


def task_of(cfg) -> Task:
    """The task of a config (a DictConfig or a plain dict)."""
    return task_named(cfg.get("task"))


def config_problems(task: Task, cfg: dict) -> list[str]:
    """What is wrong with a plain config of `task`: a model of another task (what to add or change), the task's own
    checks, and monitors that name no column a run of its model logs."""
    arch = cfg["model"]["arch"]
    if arch not in task.archs:
        owner = next((other for other in TASKS if arch in other.archs), None)
        if owner is None:
            return [f"model.arch={arch}: expected one of {', '.join(task.archs)}", *task.config_problems(cfg)]
        switch = f"add task={owner.name}" if task is TASKS[0] else f"task={task.name} trains {' | '.join(task.archs)}"
        return [f"model={arch} is {owner.model_noun}; {switch}", *task.config_problems(cfg)]
    problems = task.config_problems(cfg)
    choices = task.monitor_choices(cfg["model"], evaluates=True)  # watching an evaluated one evaluates every epoch
    trainer = cfg["trainer"]
    for key, monitor in (("trainer.monitor", trainer["monitor"]),
                         ("trainer.early_stopping.monitor", trainer["early_stopping"]["monitor"])):
        if monitor != "auto" and monitor not in choices:
            problems.append(f"{key}={monitor}: expected auto or one of {', '.join(choices)}")
    return problems


__all__ = ["TASKS", "Task", "config_problems", "task_named", "task_of"]

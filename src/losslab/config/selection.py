"""The selection metric: the one metrics.csv column that picks a run's best epoch (checkpoints/best.pt),
drives early stopping, names summary.json's best epoch and ranks a study.

trainer.monitor=auto (the default) is a yardstick common to every loss a study may try: the task's evaluated
metric (val/mAP, val/mIoU) when every epoch is evaluated (eval.every=1), else val/ref_loss (the validation
images scored by the architecture's reference loss). A run's own val/loss is never the default: a focal loss is
smaller than cross-entropy on the same predictions, so it would pick epochs by a scale that differs per loss.
"""

from __future__ import annotations

from losslab.reporting.ranking import REF_LOSS, default_mode
from losslab.tasks import Task

AUTO = "auto"


def selection_metric(task: Task, sections: dict) -> tuple[str, str]:
    """trainer.monitor and trainer.mode of the plain config `sections`, `auto` resolved."""
    trainer = sections["trainer"]
    if trainer["monitor"] != AUTO:
        monitor = trainer["monitor"]
    else:
        monitor = task.yardstick if sections["eval"]["every"] == 1 else REF_LOSS
    return monitor, default_mode(monitor) if trainer["mode"] == AUTO else trainer["mode"]


def stopping_metric(task: Task, sections: dict) -> tuple[str, str]:
    """trainer.early_stopping's monitor and mode: the selection metric's unless set apart."""
    stopping = sections["trainer"]["early_stopping"]
    selected, selected_mode = selection_metric(task, sections)
    monitor = selected if stopping["monitor"] == AUTO else stopping["monitor"]
    if stopping["mode"] != AUTO:
        return monitor, stopping["mode"]
    return monitor, selected_mode if monitor == selected else default_mode(monitor)


def evaluation_interval(task: Task, sections: dict) -> int:
    """How often a run evaluates: eval.every, or every epoch when the selection metric or an enabled early
    stopping watches an evaluated metric (val/mAP, ...): every epoch that can become best then has its value."""
    evaluated = set(task.evaluated_metrics(sections["model"]))
    monitors = [selection_metric(task, sections)[0]]
    if sections["trainer"]["early_stopping"]["enabled"]:
        monitors.append(stopping_metric(task, sections)[0])
    return 1 if any(monitor in evaluated for monitor in monitors) else sections["eval"]["every"]


def settle_selection(task: Task, sections: dict) -> None:
    """Write the resolved selection into the plain config `sections`: trainer.monitor and mode, the early
    stopping's, and a scheduler's `mode: auto` (ReduceLROnPlateau follows trainer.mode), so that every reader of
    the config (the scheduler, the run folder's config, a resume) sees the metric this run selects by."""
    trainer, stopping = sections["trainer"], sections["trainer"]["early_stopping"]
    stopping["monitor"], stopping["mode"] = stopping_metric(task, sections)
    trainer["monitor"], trainer["mode"] = selection_metric(task, sections)
    if sections["scheduler"].get("mode") == AUTO:
        sections["scheduler"]["mode"] = trainer["mode"]

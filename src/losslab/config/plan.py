"""`Plan`: what a run does, decided once by validation (losslab.config.validation.validate) from its composed
config: plain values and the task object. Training, evaluation and modeling take a plan or plain arguments and
never ask config/ again; this module is the only part of config/ they import, and it imports nothing of config/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from losslab.tasks.base import Task

CHECKPOINT_CHOICES = ("best", "last", "both", "none")  # trainer.checkpoints: what a finished run keeps
# trainer.checkpoints was a boolean before it named what to keep: stored configs and old habits still say so.
CHECKPOINT_BOOLEANS = {"true": "both", "false": "none"}
BALANCES = ("none", "initial")  # loss.balance: keep the weights | match loss=default's gradient norms at the start


def checkpoint_choice(value: Any) -> str:
    """trainer.checkpoints as one of CHECKPOINT_CHOICES (true and false as they meant: both and none); any other
    value is returned as given, for validation to refuse."""
    text = str(value).lower() if isinstance(value, bool | str) else str(value)
    return CHECKPOINT_BOOLEANS.get(text, text)


def kept(choice: str) -> tuple[str, ...]:
    """The checkpoint files (best, last) a finished run keeps under trainer.checkpoints=`choice`."""
    return {"best": ("best",), "last": ("last",), "both": ("best", "last"), "none": ()}[choice]


@dataclass(frozen=True)
class Stopping:
    """Early stopping: stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""

    monitor: str
    mode: str  # min | max
    patience: int
    min_delta: float


@dataclass(frozen=True)
class Plan:
    """A validated run: every decision made, every section a builder reads as plain values."""

    task: Task  # what differs between detection and segmentation
    sections: dict[str, Any]  # the config resolved to plain values: model, data, split, augment, loss, optimizer, ...
    # The config as composed, in YAML with its interpolations kept (scheduler.T_max: ${trainer.max_epochs}): what
    # the run folder and checkpoints keep, so that a resume which extends the run re-resolves them.
    composed: str
    max_epochs: int
    seed: int
    device: str  # trainer.device as given: auto | cpu | cuda | cuda:N
    precision: str  # 32 | 16-mixed | bf16-mixed
    progress: bool
    checkpoints: str  # one of CHECKPOINT_CHOICES (true and false as they meant: both and none)
    keep_resume_state: bool
    monitor: str  # the metrics.csv column that picks the best epoch
    mode: str  # min | max
    eval_every: int  # metrics every N epochs (0: never); 1 when a monitor watches an evaluated metric
    early_stopping: Stopping | None
    grad_clip_norm: float | None
    max_skipped_batches: int | None  # trainer.on_nonfinite=skip: the batches a run may skip; None: stop at once
    on_extend: str  # last_lr | replan
    loss_choices: dict[str, dict]  # {config key: choice} of the task's components
    loss_weights: dict[str, float]  # {component: weight}
    loss_balance: str = "none"  # one of BALANCES
    explicit_weights: tuple[str, ...] = ()  # components whose loss.weights differ from the presets': balance keeps them

    @property
    def model(self) -> dict:
        return self.sections["model"]

"""The optimizer and the learning-rate schedule of a run: torch's classes, named by `_target_` and checked against
their own signatures (losslab.config.torch_arguments), with losslab's warmup and loss-phase factors on top."""

from __future__ import annotations

import importlib
import warnings

import torch
from torch import nn

ReduceLROnPlateau = torch.optim.lr_scheduler.ReduceLROnPlateau


def target_class(target: str) -> type:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build_optimizer(options: dict, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer a plain `optimizer` section names, over the trainable parameters; with
    `exempt_norm_and_bias` the one-dimensional ones (biases, normalisation weights) get no weight decay."""
    options = dict(options)
    optimizer_class = target_class(options.pop("_target_"))
    exempt = options.pop("exempt_norm_and_bias")
    params = [p for p in model.parameters() if p.requires_grad]
    if exempt and "weight_decay" in options:
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return optimizer_class(params, **options)


class Schedulers:
    """The configured torch scheduler (the schedule proper) with two factors on top: a linear warmup over the
    first `warmup_steps` optimizer steps, from `warmup_factor` to 1, and the loss phase's lr factor.

    Why not chain torch's LinearLR? Chainable schedulers multiply whatever lr they find, but others set it
    from their own parameters (CyclicLR computes it from base_lr and max_lr at every step) and would erase
    the warmup and the phase factor. So the optimizer's lr is always schedule x warmup x phase factor, and the
    schedule's own lr is put back into the optimizer before it steps: every scheduler sees only itself.

    A resumed run that trains beyond the trainer.max_epochs it was planned for (extending it) either holds the lr
    of its last planned epoch (`hold`: the schedule stops stepping) or continues a schedule planned over the new
    length (`load_state_dict(..., replan=True)`).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, main, per_step: bool, warmup_steps: int,
                 warmup_factor: float):
        self.optimizer, self.main, self.per_step = optimizer, main, per_step
        self.warmup_steps, self.warmup_factor = warmup_steps, warmup_factor
        self.steps = 0  # optimizer steps taken
        self.epochs = 0  # epochs ended
        self.hold_from: int | None = None  # after this many epochs the schedule no longer steps
        self.phase_factor = 1.0
        self.scheduled = [group["lr"] for group in optimizer.param_groups]  # the schedule's own lr per group
        self._apply()

    def warmup(self) -> float:
        """The warmup factor at the current step: linear from warmup_factor to 1, then 1."""
        if self.steps >= self.warmup_steps:
            return 1.0
        return self.warmup_factor + (1.0 - self.warmup_factor) * self.steps / self.warmup_steps

    def step(self) -> None:
        """After every optimizer step: advance the warmup, and the schedule when it runs per step."""
        self.steps += 1
        if self.per_step and not self._held():
            self._step_main()
        self._apply()

    def end_epoch(self, monitored: float) -> None:
        """After every epoch: advance a per-epoch schedule (a plateau scheduler with the monitored value)."""
        self.epochs += 1
        if not self.per_step and not self._held():
            self._step_main(monitored)
            self._apply()

    def hold(self, from_epoch: int, lr: float) -> None:
        """Stop the schedule once `from_epoch` epochs have ended: the epochs after it train at its lr. `lr` is the
        optimizer's lr of that epoch (its metrics.csv row), needed when it has already ended."""
        if self.hold_from is not None:  # already held by an earlier extension
            return
        self.hold_from = from_epoch
        if self.epochs >= from_epoch:  # the schedule stepped past it: back to the rate it trained at
            self.scheduled = [lr / (self.warmup() * self.phase_factor)] * len(self.scheduled)
            self._apply()

    def _held(self) -> bool:
        return self.hold_from is not None and self.epochs >= self.hold_from

    def set_phase_factor(self, factor: float) -> None:
        self.phase_factor = factor
        self._apply()

    def _step_main(self, monitored: float | None = None) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.scheduled, strict=True):
            group["lr"] = lr
        if isinstance(self.main, ReduceLROnPlateau):
            self.main.step(monitored)
        else:
            self.main.step()
        self.scheduled = [group["lr"] for group in self.optimizer.param_groups]

    def _apply(self) -> None:
        factor = self.warmup() * self.phase_factor
        for group, lr in zip(self.optimizer.param_groups, self.scheduled, strict=True):
            group["lr"] = lr * factor

    def state_dict(self) -> dict:
        return {"main": self.main.state_dict(), "steps": self.steps, "scheduled": self.scheduled,
                "phase_factor": self.phase_factor, "hold_from": self.hold_from}

    def load_state_dict(self, state: dict, epochs: int, replan: bool = False) -> None:
        """The state of a run that has trained `epochs` epochs. With `replan` the torch scheduler keeps the plan
        it was built with (over the resumed run's trainer.max_epochs) and is stepped through the epochs (or optimizer
        steps) already trained, so the lr is the one the longer plan gives here; a plateau scheduler, which follows
        the monitored value rather than a plan, keeps its state."""
        self.steps, self.epochs, self.phase_factor = state["steps"], epochs, state["phase_factor"]
        self.hold_from = state.get("hold_from")
        if replan and not isinstance(self.main, ReduceLROnPlateau):
            self.hold_from = None
            self.scheduled = [group["initial_lr"] for group in self.optimizer.param_groups]
            with warnings.catch_warnings():  # replayed steps come without optimizer steps, on purpose
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
                for _ in range(self.steps if self.per_step else epochs):
                    self._step_main()
        else:
            self.main.load_state_dict(state["main"])
            self.scheduled = state["scheduled"]
        self._apply()


def build_schedulers(options: dict, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Schedulers:
    """The schedule a plain `scheduler` section names, with its warmup over `warmup_epochs` x `steps_per_epoch`
    optimizer steps."""
    options = dict(options)
    warmup_epochs, warmup_factor = options.pop("warmup_epochs"), options.pop("warmup_factor")
    per_step = options.pop("interval") == "step"
    main = target_class(options.pop("_target_"))(optimizer, **options)
    return Schedulers(optimizer, main, per_step, round(warmup_epochs * steps_per_epoch), warmup_factor)

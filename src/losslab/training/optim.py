"""The optimizer and the learning-rate schedule of a run: torch's classes, named by `_target_` and checked against
their own signatures (losslab.config.validation), with losslab's warmup and loss-phase factors on top."""

from __future__ import annotations

import importlib

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
    """

    def __init__(self, optimizer: torch.optim.Optimizer, main, per_step: bool, warmup_steps: int,
                 warmup_factor: float):
        self.optimizer, self.main, self.per_step = optimizer, main, per_step
        self.warmup_steps, self.warmup_factor = warmup_steps, warmup_factor
        self.steps = 0  # optimizer steps taken
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
        if self.per_step:
            self._step_main()
        self._apply()

    def end_epoch(self, monitored: float) -> None:
        """After every epoch: advance a per-epoch schedule (a plateau scheduler with the monitored value)."""
        if not self.per_step:
            self._step_main(monitored)
            self._apply()

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
                "phase_factor": self.phase_factor}

    def load_state_dict(self, state: dict) -> None:
        self.main.load_state_dict(state["main"])
        self.steps, self.scheduled, self.phase_factor = state["steps"], state["scheduled"], state["phase_factor"]
        self._apply()


def build_schedulers(options: dict, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Schedulers:
    """The schedule a plain `scheduler` section names, with its warmup over `warmup_epochs` x `steps_per_epoch`
    optimizer steps."""
    options = dict(options)
    warmup_epochs, warmup_factor = options.pop("warmup_epochs"), options.pop("warmup_factor")
    per_step = options.pop("interval") == "step"
    main = target_class(options.pop("_target_"))(optimizer, **options)
    return Schedulers(optimizer, main, per_step, round(warmup_epochs * steps_per_epoch), warmup_factor)

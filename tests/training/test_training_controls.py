"""Optimizers, schedulers, early stopping, gradient clipping, skipping non-finite batches, seeds."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import tiny_config
from losslab import compose_config, run
from losslab.config.compose import config_dir
from losslab.config.validation import validate
from losslab.reporting.history import read_metrics
from losslab.training.loop import SkipBudget, train_one_epoch
from losslab.training.optim import build_optimizer, build_schedulers

OPTIMIZERS = sorted(p.stem for p in (config_dir() / "optimizer").glob("*.yaml"))
SCHEDULERS = sorted(p.stem for p in (config_dir() / "scheduler").glob("*.yaml"))


def _tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))


def _plain(section) -> dict:
    return OmegaConf.to_container(section, resolve=True)


def test_every_optimizer_the_issue_lists_is_an_option():
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw", "adadelta", "adagrad", "adamax", "asgd", "rprop", "rmsprop",
                               "lion"}
    assert set(SCHEDULERS) == {"none", "step", "multistep", "exponential", "cosine", "cyclic", "plateau"}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_builds_from_its_config_and_reduces_a_loss(name):
    cfg = compose_config([f"optimizer={name}", "optimizer.lr=0.01"])
    model = _tiny_model()
    optimizer = build_optimizer(_plain(cfg.optimizer), model)
    assert optimizer.param_groups[0]["lr"] == 0.01
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    first = torch.nn.functional.mse_loss(model(x), y).item()
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first


def test_norm_and_bias_parameters_can_be_exempt_from_weight_decay():
    cfg = compose_config(["optimizer=sgd", "optimizer.exempt_norm_and_bias=true", "optimizer.weight_decay=0.1"])
    groups = build_optimizer(_plain(cfg.optimizer), _tiny_model()).param_groups
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert all(p.ndim == 2 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])
    assert len(groups[1]["params"]) == 4  # two biases, BatchNorm weight and bias


# Each scheduler with settings that make it change the lr within 4 epochs.
STEPPING = {"multistep": ["scheduler.milestones=[1,3]"], "step": ["scheduler.step_size=3"]}


@pytest.mark.parametrize("name", SCHEDULERS)
def test_each_scheduler_steps_as_configured(name):
    cfg = compose_config([f"scheduler={name}", "scheduler.warmup_epochs=0", "trainer.max_epochs=4",
                          *STEPPING.get(name, [])])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    # As a run builds it: from the validated plan, where plateau's `mode: auto` is the selection metric's.
    schedulers = build_schedulers(validate(cfg).sections["scheduler"], optimizer, steps_per_epoch=5)
    lrs = []
    for _epoch in range(4):
        for _ in range(5):
            optimizer.step()
            schedulers.step()
        lrs.append(optimizer.param_groups[0]["lr"])
        schedulers.end_epoch(monitored=1.0)  # a plateau: the monitored value never improves
    assert all(math.isfinite(lr) and lr >= 0 for lr in lrs)
    expected = {"none": [0.1] * 4, "exponential": [0.1, 0.07, 0.049, 0.0343], "step": [0.1, 0.1, 0.1, 0.01],
                "multistep": [0.1, 0.01, 0.01, 0.001], "plateau": [0.1, 0.1, 0.1, 0.01]}
    if name in expected:
        assert lrs == pytest.approx(expected[name])
    if name == "cyclic":
        assert schedulers.per_step and len(set(lrs)) > 1


def test_early_stopping_ends_the_run_and_says_when(tmp_path):
    result = run(tiny_config("model=retinanet", "trainer.max_epochs=6", "trainer.early_stopping.enabled=true",
                             "trainer.early_stopping.patience=1", "trainer.early_stopping.min_delta=100",
                             "trainer.checkpoints=false", run_dir=tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result.status == summary["status"] == "stopped_early"
    assert summary["stopped_epoch"] == summary["epochs_run"] == 2  # nothing beats epoch 1 by 100
    assert len(read_metrics(tmp_path / "metrics.csv")) == 2


def test_non_finite_batches_are_skipped_up_to_the_limit():
    cfg = tiny_config()
    from losslab import build_dataloaders, build_model
    from losslab.modeling.heads import get_losses, set_losses
    from losslab.training.loop import NonFiniteLossError

    torch.manual_seed(0)
    model = build_model(cfg)
    losses = get_losses(model)
    calls = []

    def every_other_nan(*args):
        calls.append(1)
        value = losses.classification(*args)
        return value * float("nan") if len(calls) % 2 else value

    set_losses(model, type(losses)(**{**losses.__dict__, "classification": every_other_nan}))
    loader = build_dataloaders(cfg)["train"]  # 3 batches: nan, fine, nan
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    budget = SkipBudget(limit=2)
    averages = train_one_epoch(model, optimizer, loader, torch.device("cpu"), 1, progress=False, skip_budget=budget)
    assert budget.skipped == 2 and math.isfinite(averages["loss"])
    with pytest.raises(NonFiniteLossError):
        train_one_epoch(model, optimizer, loader, torch.device("cpu"), 2, progress=False, skip_budget=budget)


def test_gradient_clipping_bounds_the_step():
    model = _tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]

    class HugeLoss(torch.nn.Module):
        def forward(self, images, targets):
            return {"loss_classifier": model(torch.stack(images)).sum() * 1e6}

    batch = ([torch.randn(4) for _ in range(8)], [{} for _ in range(8)])
    train_one_epoch(HugeLoss(), optimizer, [batch], torch.device("cpu"), 1, progress=False, grad_clip_norm=0.5)
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert step.norm().item() == pytest.approx(0.5, rel=1e-4)


def test_the_same_seed_gives_an_identical_metrics_csv(tmp_path):
    def metrics(name):
        run(tiny_config("model=retinanet", "trainer.max_epochs=2", "trainer.checkpoints=false",
                        run_dir=tmp_path / name))
        with (tmp_path / name / "metrics.csv").open() as f:
            return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]

    assert metrics("a") == metrics("b")


def test_warmup_and_a_loss_phase_factor_scale_even_a_cyclic_schedule():
    """CyclicLR sets the lr from base_lr and max_lr at every step: the warmup and the loss phase's lr factor must
    still scale the lr the optimizer really uses (read here from the optimizer at every step)."""
    cfg = compose_config(["scheduler=cyclic", "scheduler.warmup_epochs=1", "scheduler.warmup_factor=0.5",
                          "scheduler.base_lr=0.001", "scheduler.max_lr=0.003", "scheduler.step_size_up=2",
                          "scheduler.mode=triangular"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedulers = build_schedulers(_plain(cfg.scheduler), optimizer, steps_per_epoch=4)  # 4 warmup steps
    cyclic = [0.001, 0.002, 0.003, 0.002, 0.001, 0.002, 0.003, 0.002]  # base -> max in 2 steps, back in 2
    warmup = [0.5, 0.625, 0.75, 0.875, 1.0, 1.0, 1.0, 1.0]
    used = []
    for step in range(8):
        if step == 6:
            schedulers.set_phase_factor(0.1)  # a loss phase with lr_factor 0.1 starts
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedulers.step()
    factors = [w * (0.1 if step >= 6 else 1.0) for step, w in enumerate(warmup)]
    assert used == pytest.approx([c * f for c, f in zip(cyclic, factors, strict=True)])


def test_the_schedule_state_round_trips_through_a_checkpoint():
    cfg = compose_config(["scheduler=cyclic", "scheduler.warmup_epochs=1"])
    first = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedulers = build_schedulers(_plain(cfg.scheduler), first, steps_per_epoch=3)
    for _ in range(2):
        first.step()
        schedulers.step()
    schedulers.set_phase_factor(0.5)
    second = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    restored = build_schedulers(_plain(cfg.scheduler), second, steps_per_epoch=3)
    second.load_state_dict(first.state_dict())
    restored.load_state_dict(schedulers.state_dict(), epochs=0)  # two steps of the first epoch
    for _ in range(3):
        for optimizer, each in ((first, schedulers), (second, restored)):
            optimizer.step()
            each.step()
        assert second.param_groups[0]["lr"] == first.param_groups[0]["lr"]

"""losslab: configurable training experiments for torchvision detectors and segmenters.

The public Python API. Each function takes a composed config (`compose_config`), validates it once into the run's
plan (losslab.config.validation) and hands the plan to the layer that does the work; modules are imported on first
use, so that `import losslab` (and the command line) stays light:

    from losslab import compose_config, build_model, build_dataloaders, validation_loss, run
"""

from __future__ import annotations

import importlib

# Imported from their modules as they are: they take no config.
_API = {
    "compose_config": "losslab.config.compose",
    "train_one_epoch": "losslab.training.loop",
    "validation_loss": "losslab.training.loop",
    "RunResult": "losslab.training.run",
}

__all__ = sorted([*_API, "build_data", "build_dataloaders", "build_model", "run"])


def build_data(cfg):
    """The configured dataset, split three ways and augmented (train split only)."""
    from losslab.training import builders

    return builders.build_data(_plan(cfg))


def build_dataloaders(cfg, data=None, world=None):
    """{"train", "val", "test"} DataLoaders yielding (images, targets) as torchvision expects."""
    from losslab.training import builders

    return builders.build_dataloaders(_plan(cfg), data, world)


def build_model(cfg, num_classes: int | None = None, class_counts: list[int] | None = None, start: bool = True):
    """The configured model with its losses wired in, its start weights loaded with `start`."""
    from losslab.training import builders

    return builders.build_model(_plan(cfg), num_classes, class_counts, start)


def run(cfg, overrides: list[str] | None = None):
    """Train the configured run (or continue the one `resume=` names) in its own folder; its RunResult."""
    from losslab.commands.train import run as train_run

    return train_run(cfg, overrides)


def _plan(cfg):
    from losslab.config.validation import validate

    return validate(cfg)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'losslab' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)

"""losslab: configurable training experiments for torchvision detectors.

The public Python API, imported on first use so that `import losslab` (and the command line) stays light:

    from losslab import compose_config, build_model, build_dataloaders, validation_loss, run
"""

from __future__ import annotations

import importlib

_API = {
    "compose_config": "losslab.config.compose",
    "build_data": "losslab.training.builders",
    "build_dataloaders": "losslab.training.builders",
    "build_model": "losslab.training.builders",
    "train_one_epoch": "losslab.training.loop",
    "validation_loss": "losslab.training.loop",
    "run": "losslab.training.run",
    "RunResult": "losslab.training.run",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'losslab' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)

"""Shared test helpers: tiny configs that train in seconds on two CPU cores."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from losslab import compose_config
from losslab.reporting.history import write_metrics

# 64 px images, 10 images (6 train / 2 val / 2 test), one epoch, no progress bars.
TINY = [
    "data.num_images=10",
    "data.image_size=64",
    "data.max_objects=2",
    "data.batch_size=2",
    "model.min_size=64",
    "model.max_size=64",
    "model.box_batch_size_per_image=32",
    "trainer.max_epochs=1",
    "trainer.progress=false",
    "trainer.device=cpu",
]


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests are many small ops; more threads than cores only adds contention on CI's 2 cores.
    torch.set_num_threads(min(2, torch.get_num_threads()))


def tiny_config(*overrides: str, run_dir=None):
    extra = [f"run_dir={run_dir}"] if run_dir is not None else []
    return compose_config([*TINY, *overrides, *extra])


def fake_run(path, overrides, rows, status="completed", loss=None, monitor="val/loss"):
    """A run folder as `train` leaves it, made up (no training): .hydra/overrides.yaml and config.yaml (retinanet,
    `loss` as the loss section), metrics.csv holding `rows` (none for a run that failed at once) and summary.json."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    config = {"model": {"arch": "retinanet", "backbone": "resnet18_fpn"},
              "loss": loss or {"cls": {"name": "default"}}, "trainer": {"monitor": monitor}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if rows:
        write_metrics(path / "metrics.csv", rows)
    best = min(rows, key=lambda r: r["val/loss"]) if rows else None
    (path / "summary.json").write_text(json.dumps({"status": status, "best": best, "epochs_run": len(rows)}))
    return path

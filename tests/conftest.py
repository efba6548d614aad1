"""Shared test helpers: tiny configs that train in seconds on two CPU cores."""

from __future__ import annotations

import pytest
import torch

from losslab import compose_config

# 64 px images, 10 images (5 train / 3 val / 2 test), one epoch, no progress bars.
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

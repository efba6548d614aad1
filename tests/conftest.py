"""Shared test helpers: tiny configs that train in seconds on two CPU cores."""

from __future__ import annotations

import pytest
import torch

from losslab import compose_config

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


# task=segmentation's tiny run: the same data and trainer, the default segmenter (LR-ASPP) at 64 px.
TINY_SEGMENTATION = [
    "task=segmentation",
    *[override for override in TINY if not override.startswith("model.box_batch_size")],
]


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests are many small ops; more threads than cores only adds contention on CI's 2 cores.
    torch.set_num_threads(min(2, torch.get_num_threads()))


def tiny_config(*overrides: str, run_dir=None):
    extra = [f"run_dir={run_dir}"] if run_dir is not None else []
    return compose_config([*TINY, *overrides, *extra])


def tiny_segmentation_config(*overrides: str, run_dir=None):
    extra = [f"run_dir={run_dir}"] if run_dir is not None else []
    return compose_config([*TINY_SEGMENTATION, *overrides, *extra])

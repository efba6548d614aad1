"""DataLoaders over the splits, in torchvision's detection convention, shared out among data-parallel processes."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, DistributedSampler

from losslab.data.datasets import DetectionData
from losslab.distributed import SINGLE_PROCESS, ShardSampler, World
from losslab.errors import LosslabError


def collate(batch: list) -> tuple[tuple, tuple]:
    """(images, targets) as tuples: detection images differ in size, so they are not stacked."""
    return tuple(zip(*batch, strict=True))


def make_loaders(
    data: DetectionData, batch_size: int, num_workers: int = 0, seed: int = 0, pin_memory: bool = False,
    world: World = SINGLE_PROCESS, drop_lone_image: bool = False,
) -> dict[str, DataLoader]:
    """DataLoaders for every split; only train shuffles, with a generator seeded by `seed`.

    Data-parallel (`world` of several processes), `batch_size` is per process: train uses a
    DistributedSampler (padded so every process takes the same number of steps), val and test
    disjoint shards that together hold every image once. `drop_lone_image`: a last train batch of one image is
    left out (BatchNorm cannot train on the pooled features of a single image, as segmentation networks have).
    """
    if batch_size < 1:
        raise LosslabError(f"data.batch_size={batch_size}: expected a positive number of images per step.")
    common = dict(batch_size=batch_size, num_workers=num_workers, collate_fn=collate, pin_memory=pin_memory,
                  persistent_workers=num_workers > 0)
    generator = torch.Generator().manual_seed(seed)
    per_process = math.ceil(len(data.train) / world.size)
    drop_last = drop_lone_image and batch_size > 1 and per_process > batch_size and per_process % batch_size == 1
    if not world.distributed:
        return {
            "train": DataLoader(data.train, shuffle=True, generator=generator, drop_last=drop_last, **common),
            "val": DataLoader(data.val, shuffle=False, **common),
            "test": DataLoader(data.test, shuffle=False, **common),
        }
    train_sampler = DistributedSampler(data.train, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed)
    return {
        "train": DataLoader(data.train, sampler=train_sampler, generator=generator, drop_last=drop_last, **common),
        "val": DataLoader(data.val, sampler=ShardSampler(len(data.val), world), **common),
        "test": DataLoader(data.test, sampler=ShardSampler(len(data.test), world), **common),
    }

"""Data-parallel training under torchrun: process-group set-up and the few collectives losslab needs.

Every function here is a no-op (or the identity) in a single process, so the training code calls
them unconditionally. torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; nothing else starts DDP.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Only the main process writes files, plots and logs."""
        return self.rank == 0


SINGLE_PROCESS = World()


def launched_world() -> World:
    """The world torchrun describes in the environment (a single process when it did not launch us)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                 int(os.environ.get("WORLD_SIZE", 1)))


def init_world(device_type: str) -> World:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU); idempotent."""
    world = launched_world()
    if world.distributed and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return world


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of `values` over every process (float64, so image-weighted sums stay exact)."""
    if not active():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_agree(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true in every process (e.g. "this batch's loss is finite")."""
    return all_reduce_sum([0.0 if flag else 1.0], device)[0] == 0.0


def broadcast(obj):
    """The main process's `obj`, in every process."""
    if not active():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather(items: list) -> list:
    """Every process's `items` concatenated (rank order), in every process."""
    if not active():
        return items
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


class ShardSampler(Sampler[int]):
    """Process `rank` takes every `size`-th index starting at its rank, without padding: each image
    is scored exactly once across the processes (DistributedSampler would repeat some to even out)."""

    def __init__(self, length: int, world: World):
        self.length, self.world = length, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.world.rank, self.length, self.world.size))

    def __len__(self) -> int:
        return len(range(self.world.rank, self.length, self.world.size))


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

"""How a detector is run: on which device, in which precision, and in which train/eval modes (losses come only
from train mode, so the validation loss needs a mode of its own)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from losslab.distributed import World, launched_world
from losslab.errors import LosslabError

# Modules whose train mode changes the forward itself (running statistics, random masks).
FROZEN_DURING_VALIDATION = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                            nn.modules.dropout._DropoutNd)
AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def resolve_device(name: str, world: World | None = None, key: str = "trainer.device") -> torch.device:
    """The device `name` names (`key` says where it was given); under torchrun "auto" and "cuda" mean this
    process's GPU."""
    world = world or launched_world()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise LosslabError(f"{key}={name!r} is not a device; expected auto, cpu, cuda or cuda:N.") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LosslabError(f"{key}={name} but CUDA is not available here; use {key}=cpu or auto.")
    if device.type == "cuda" and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast for a mixed `precision` ("16-mixed", "bf16-mixed"); a disabled one for "32"."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def to_device(images, targets, device: torch.device) -> tuple[list[Tensor], list[dict]]:
    non_blocking = device.type == "cuda"
    images = [image.to(device, non_blocking=non_blocking) for image in images]
    targets = [
        {k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v for k, v in t.items()}
        for t in targets
    ]
    return images, targets


@contextlib.contextmanager
def restored_modes(model: nn.Module) -> Iterator[None]:
    """Puts every module back in the train/eval mode it had on entry."""
    previous = {module: module.training for module in model.modules()}
    try:
        yield
    finally:
        for module, training in previous.items():
            module.training = training


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for every module; restores each module's previous mode on exit."""
    with restored_modes(model):
        model.eval()
        yield model


@contextlib.contextmanager
def loss_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Train mode for the forward, eval mode for normalisation and dropout; restores every
    module's previous mode on exit."""
    with restored_modes(model):
        model.train()
        for module in model.modules():
            if isinstance(module, FROZEN_DURING_VALIDATION):
                module.eval()
        yield model

"""One training epoch and one validation-loss pass, with explicit arguments and no config.

Both return per-image averages of the total loss and of every component under its common name
(see COMPONENT_NAMES), weighting each batch by the number of images in it.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from losslab.distributed import all_agree, all_reduce_sum
from losslab.losses.catalogue import COMPONENTS
from losslab.modeling.runtime import autocast, loss_mode, to_device

log = logging.getLogger(__name__)

# torchvision's loss keys (R-CNN, RetinaNet, FCOS and SSD) -> the names losslab logs
COMPONENT_NAMES = {
    "loss_classifier": "classification",
    "loss_box_reg": "box_regression",
    "loss_objectness": "objectness",
    "loss_rpn_box_reg": "rpn_box_regression",
    "loss_mask": "mask",
    "classification": "classification",
    "bbox_regression": "box_regression",
    "bbox_ctrness": "centerness",  # FCOS
    "pixel": "pixel",  # losslab's segmenters name their components themselves
    "aux": "aux",
}

class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; carries where (the epoch, and the train step or the validation pass) and
    which components."""

    def __init__(self, epoch: int, losses: dict[str, float], step: int | None = None):
        self.epoch, self.step, self.losses = epoch, step, losses
        bad = [name for name, value in losses.items() if name != "loss" and not _finite(value)]
        where = "the validation pass" if step is None else f"train step {step}"
        super().__init__(f"non-finite loss at epoch {epoch}, {where}: {', '.join(bad) or 'loss'} "
                         f"({', '.join(f'{k}={v:.4g}' for k, v in losses.items())})")


class SkipBudget:
    """How many non-finite batches a run may still skip (trainer.on_nonfinite=skip)."""

    def __init__(self, limit: int):
        self.limit, self.skipped = limit, 0

    def take(self) -> bool:
        """Count one more skipped batch; False once the limit is used up."""
        if self.skipped >= self.limit:
            return False
        self.skipped += 1
        return True


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    device: torch.device,
    epoch: int,
    progress: bool = True,
    step_schedulers: Sequence[torch.optim.lr_scheduler.LRScheduler] = (),
    grad_clip_norm: float | None = None,
    skip_budget: SkipBudget | None = None,
    precision: str = "32",
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """Train `model` for one pass over `loader`; return the per-image average of every loss
    (over every process's images when training data-parallel).

    `step_schedulers` are stepped after every optimizer step (warmup, cyclic schedules);
    `grad_clip_norm` clips the gradient norm before each step. A batch whose loss is NaN or
    infinite raises NonFiniteLossError before its optimizer step, so the weights stay as they were
    after the last good step; with a `skip_budget` such batches are skipped until it runs out.
    The forward runs under autocast for a mixed `precision`; `scaler` (float16) scales the loss.
    """
    model.train()
    average = RunningAverage()
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not progress, dynamic_ncols=True)
    for step, (images, targets) in enumerate(bar):
        images, targets = to_device(images, targets, device)
        with autocast(device, precision):
            losses = named_losses(model(images, targets))
        values = as_floats(losses)
        # Every process must skip together, or the others would wait forever in the gradient all-reduce.
        if not all_agree(_finite(values["loss"]), device):
            if skip_budget is None or not skip_budget.take():
                raise NonFiniteLossError(epoch, values, step)
            log.warning("skipped a batch with a non-finite loss at epoch %d, step %d (%d skipped so far): %s",
                        epoch, step, skip_budget.skipped, values)
            continue
        average.add(values, len(images))
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            losses["loss"].backward()
            clip_gradients(parameters, grad_clip_norm)
            optimizer.step()
        elif not scaled_step(losses["loss"], optimizer, scaler, parameters, grad_clip_norm):
            continue  # float16 gradients overflowed: the step was skipped, so the schedule waits too
        for scheduler in step_schedulers:
            scheduler.step()
        bar.set_postfix(loss=f"{average.means().get('loss', math.nan):.4f}", refresh=False)
    return average.reduced(device).means()


def scaled_step(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                parameters: list[Tensor], grad_clip_norm: float | None) -> bool:
    """Backward and step through the GradScaler; False when it skipped the step (inf/NaN gradients)."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    clip_gradients(parameters, grad_clip_norm)
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() >= scale  # the scaler lowers its scale exactly when it skips


def clip_gradients(parameters: list[Tensor], max_norm: float | None) -> None:
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)


@torch.no_grad()
def validation_loss(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | None = None,
    seed: int = 0,
    progress: bool = False,
    precision: str = "32",
) -> dict[str, float]:
    """The per-image average loss of `model` over `loader` (over every process's share when
    data-parallel), without changing the model.

    torchvision returns losses only in train mode, so the forward runs in train mode under
    no_grad with normalisation and dropout held in eval mode. Each image is its own forward: a batch
    pads its images to the largest one and normalises the R-CNN losses over every image's sampled
    anchors and proposals, so a loss computed by batch would depend on which images share it.
    Proposal sampling is random in train mode; each image's runs on a forked RNG seeded with `seed`
    and the image's id, so the same weights always give the same value, whatever the batch size or
    the order, and the caller's random stream is left where it was.
    """
    device = device or next(model.parameters()).device
    average = RunningAverage()
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with loss_mode(model), torch.random.fork_rng(devices=cuda_devices):
        for images, targets in tqdm(loader, desc="validation", leave=False, disable=not progress,
                                    dynamic_ncols=True):
            images, targets = to_device(images, targets, device)
            for image, target in zip(images, targets, strict=True):
                torch.manual_seed(image_seed(seed, target.get("image_id", 0)))
                with autocast(device, precision):
                    losses = named_losses(model([image], [target]))
                average.add(as_floats(losses), 1)
    return average.reduced(device).means()


def image_seed(seed: int, image_id) -> int:
    """The seed of one image's proposal sampling: `seed` and the image's id (an int, or a name such as a VOC stem)."""
    key = int(image_id) if isinstance(image_id, int | Tensor) else zlib.crc32(str(image_id).encode())
    return (seed * 1_000_003 + key) % 2**63


def named_losses(raw: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's loss dict under losslab's component names (in COMPONENTS order), plus their
    sum as "loss"."""
    renamed = {COMPONENT_NAMES[key]: value for key, value in raw.items()}
    losses = {name: renamed[name] for name in COMPONENTS if name in renamed}
    losses["loss"] = sum(losses.values())
    return losses


def as_floats(losses: dict[str, Tensor]) -> dict[str, float]:
    """Loss tensors as Python floats, with one device synchronisation for all of them."""
    names = list(losses)
    return dict(zip(names, torch.stack([losses[n].detach().float() for n in names]).tolist(), strict=True))


class RunningAverage:
    """Per-image means of named scalar losses, each batch weighted by its number of images."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float], batch_size: int) -> None:
        """Add one batch's losses (batch means)."""
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value * batch_size
        self.count += batch_size

    def means(self) -> dict[str, float]:
        return {name: total / max(1, self.count) for name, total in self.sums.items()}

    def reduced(self, device: torch.device) -> RunningAverage:
        """The average over every data-parallel process's images (itself in a single process).

        Every process sends the same list, in the same order: a sum and a presence flag for the total and for
        every component name, and its image count. So a process that saw no image (more processes than
        validation images) sends zeros and counts for nothing, and a name counts if any process saw it.
        """
        names = [*COMPONENTS, "loss"]  # the order named_losses gives them
        present = [1.0 if name in self.sums else 0.0 for name in names]
        reduced = all_reduce_sum([self.sums.get(name, 0.0) for name in names] + present + [float(self.count)], device)
        sums, seen = reduced[:len(names)], reduced[len(names):-1]
        total = RunningAverage()
        total.sums = {name: value for name, value, flag in zip(names, sums, seen, strict=True) if flag > 0}
        total.count = round(reduced[-1])
        return total


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")

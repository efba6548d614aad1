"""One training epoch and one validation-loss pass, with explicit arguments and no config.

Both return per-image averages of the total loss and of every component under its common name
(see COMPONENT_NAMES), weighting each batch by the number of images in it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from losslab.distributed import all_agree, all_reduce_sum, gather
from losslab.evaluation import score_detections
from losslab.losses import COMPONENTS

log = logging.getLogger(__name__)

# torchvision's loss keys (R-CNN and RetinaNet) -> the names losslab logs
COMPONENT_NAMES = {
    "loss_classifier": "classification",
    "loss_box_reg": "box_regression",
    "loss_objectness": "objectness",
    "loss_rpn_box_reg": "rpn_box_regression",
    "loss_mask": "mask",
    "classification": "classification",
    "bbox_regression": "box_regression",
}

# Modules whose train mode changes the forward itself (running statistics, random masks).
FROZEN_DURING_VALIDATION = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                            nn.modules.dropout._DropoutNd)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; carries where, and which components."""

    def __init__(self, epoch: int, step: int, losses: dict[str, float]):
        self.epoch, self.step, self.losses = epoch, step, losses
        bad = [name for name, value in losses.items() if name != "loss" and not _finite(value)]
        super().__init__(f"non-finite loss at epoch {epoch}, step {step}: {', '.join(bad) or 'loss'} "
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
                raise NonFiniteLossError(epoch, step, values)
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


AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast for a mixed `precision` ("16-mixed", "bf16-mixed"); a disabled one for "32"."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


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
    no_grad with normalisation and dropout held in eval mode. Proposal sampling is random in
    train mode; it runs on a forked RNG seeded with `seed`, so the same weights always give the
    same value and the caller's random stream is left where it was.
    """
    device = device or next(model.parameters()).device
    average = RunningAverage()
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with loss_mode(model), torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        for images, targets in tqdm(loader, desc="validation", leave=False, disable=not progress,
                                    dynamic_ncols=True):
            images, targets = to_device(images, targets, device)
            with autocast(device, precision):
                losses = named_losses(model(images, targets))
            average.add(as_floats(losses), len(images))
    return average.reduced(device).means()


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, device: torch.device | None = None,
            progress: bool = False, precision: str = "32") -> tuple[list[dict], list[dict], list[tuple[int, int]]]:
    """Eval-mode detections for every image of `loader`, its targets and (height, width), on the CPU.

    Restores every module's previous mode afterwards. Iterating a DataLoader draws a seed from the
    global RNG, so this runs on a forked RNG: evaluating leaves the training's random stream
    (shuffling, augmentation) exactly where it was.
    """
    device = device or next(model.parameters()).device
    predictions, targets, sizes = [], [], []
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with eval_mode(model), torch.random.fork_rng(devices=cuda_devices):
        for images, batch_targets in tqdm(loader, desc="evaluation", leave=False, disable=not progress,
                                          dynamic_ncols=True):
            images, _ = to_device(images, [], device)
            with autocast(device, precision):
                outputs = model(images)
            predictions += [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in output.items()}
                            for output in outputs]
            targets.extend(batch_targets)
            sizes.extend(tuple(image.shape[-2:]) for image in images)
    return predictions, targets, sizes


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for every module; restores each module's previous mode on exit."""
    with restored_modes(model):
        model.eval()
        yield model


def detection_metrics(model: nn.Module, loader: Iterable, classes: Sequence[str], score_threshold: float = 0.5,
                      device: torch.device | None = None, progress: bool = False,
                      precision: str = "32") -> dict[str, float]:
    """COCO box mAP, mAP50, mAP75, mAR@100 and AP per class (pycocotools), the same for masks
    (`mask_` prefix) when the model predicts them, and precision, recall and F1 at
    `score_threshold` and IoU 0.5. Data-parallel, each process predicts its share and every
    process scores all of them."""
    predictions, targets, sizes = predict(model, loader, device, progress, precision)
    predictions, targets, sizes = gather(predictions), gather(targets), gather(sizes)
    return score_detections(predictions, targets, sizes, classes, score_threshold)[0]


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


@contextlib.contextmanager
def restored_modes(model: nn.Module) -> Iterator[None]:
    """Puts every module back in the train/eval mode it had on entry."""
    previous = {module: module.training for module in model.modules()}
    try:
        yield
    finally:
        for module, training in previous.items():
            module.training = training


def named_losses(raw: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's loss dict under losslab's component names (in COMPONENTS order), plus their
    sum as "loss"."""
    renamed = {COMPONENT_NAMES[key]: value for key, value in raw.items()}
    losses = {name: renamed[name] for name in COMPONENTS if name in renamed}
    losses["loss"] = sum(losses.values())
    return losses


def to_device(images, targets, device: torch.device) -> tuple[list[Tensor], list[dict]]:
    non_blocking = device.type == "cuda"
    images = [image.to(device, non_blocking=non_blocking) for image in images]
    targets = [
        {k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v for k, v in t.items()}
        for t in targets
    ]
    return images, targets


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
        """The average over every data-parallel process's images (itself in a single process)."""
        names = sorted(self.sums)
        *sums, count = all_reduce_sum([self.sums[name] for name in names] + [float(self.count)], device)
        summed = dict(zip(names, sums, strict=True))  # sorted: every process must send the same order
        total = RunningAverage()
        total.sums = {name: summed[name] for name in self.sums}
        total.count = round(count)
        return total


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")

"""Throughput of losslab's training loop against a bare loop written like torchvision's references.

Both loops train the same model (same initial weights, restored before every repetition) on the same
batches, held in memory so that only the loops differ: (a) the bare loop of torchvision's
references/detection/engine.py -- forward, sum of the losses, one .item(), backward, step -- and (b)
losslab's `train_one_epoch`, the code `train` runs, with its loss renaming, per-image averaging,
non-finite checks, warmup scheduler and tqdm bar. They run interleaved A B A B over several
repetitions; the script prints the median images/s of each, their ratio and peak memory, and the
cost of losslab's validation-loss pass over the same images relative to its training epoch.

    python scripts/bench_overhead.py                                   # the default `train` config, CPU
    python scripts/bench_overhead.py --steps 20 --repeats 5 model.backbone=resnet50_fpn
    python scripts/bench_overhead.py task=segmentation model=unet     # smp's U-Net on resnet18, the class masks
    python scripts/bench_overhead.py --device cuda --precision bf16-mixed --image-size 800 \\
        model.backbone=resnet50_fpn data.batch_size=8                 # GPU, bf16 autocast
    python scripts/bench_overhead.py model=fcos                       # any architecture: fcos, ssdlite, ...
    python scripts/bench_overhead.py --image-size 320 model=ssdlite   # SSDlite's square side is the image size

Trailing arguments are `train` overrides (model=retinanet, data.batch_size=8, ...).
"""

from __future__ import annotations

import argparse
import copy
import io
import math
import platform
import resource
import statistics
import subprocess
import time
from contextlib import redirect_stderr

import torch
from omegaconf import OmegaConf

from losslab import build_model, compose_config
from losslab.modeling.runtime import autocast
from losslab.tasks import task_of
from losslab.training.loop import train_one_epoch, validation_loss
from losslab.training.optim import build_optimizer, build_schedulers


def bare_epoch(model, optimizer, batches, device, precision: str, scaler) -> None:
    """torchvision references/detection/engine.py's train_one_epoch, without its logger."""
    model.train()
    for images, targets in batches:
        images = [image.to(device, non_blocking=True) for image in images]
        targets = [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()}
                   for t in targets]
        with autocast(device, precision):
            loss_dict = model(images, targets)
            losses = sum(loss for loss in loss_dict.values())
        losses.item()  # the reference logs the reduced loss every step
        optimizer.zero_grad()
        if scaler is not None:
            scaler.scale(losses).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            losses.backward()
            optimizer.step()


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def make_batches(cfg, steps: int, image_size: int) -> tuple[list, int]:
    """`steps` batches of the train split's images (the config's data at `image_size` pixels, unaugmented), as
    the run's task reads them (boxes and masks of objects, or a class mask), collated as the DataLoader does; and
    the data's class count."""
    batch_size = cfg.data.batch_size
    split = OmegaConf.to_container(cfg.split, resolve=True)
    images = math.ceil(steps * batch_size / split["train"]) + batch_size  # enough for the train fraction
    data = {**OmegaConf.to_container(cfg.data, resolve=True), "num_images": images, "image_size": image_size}
    built = task_of(cfg).build_data(data, split)
    samples = [built.train[i] for i in range(steps * batch_size)]
    return ([tuple(zip(*samples[i:i + batch_size], strict=True)) for i in range(0, len(samples), batch_size)],
            len(built.classes))


def gpu_busy_percent(device: torch.device, run) -> float | None:
    """Mean GPU utilisation sampled by nvidia-smi every 50 ms while `run` runs (None without nvidia-smi)."""
    if device.type != "cuda":
        return None
    try:
        sampler = subprocess.Popen(["nvidia-smi", f"--id={device.index or 0}", "--query-gpu=utilization.gpu",
                                    "--format=csv,noheader,nounits", "-lms", "50"], stdout=subprocess.PIPE, text=True)
    except FileNotFoundError:
        return None
    try:
        run()
    finally:
        sampler.terminate()
    samples = [int(line) for line in sampler.communicate()[0].split() if line.strip().isdigit()]
    return statistics.mean(samples[2:]) if len(samples) > 4 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="training steps per repetition")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions of each loop")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--precision", default="32", choices=["32", "16-mixed", "bf16-mixed"])
    parser.add_argument("--image-size", type=int, help="default: the config's data.image_size")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("overrides", nargs="*", help="train overrides, e.g. model=retinanet data.batch_size=8")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    image_size = args.image_size or compose_config(args.overrides).data.image_size
    cfg = compose_config([f"model.min_size={image_size}", f"model.max_size={image_size}", *args.overrides])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    batches, num_classes = make_batches(cfg, args.steps, image_size)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=num_classes).to(device)
    if cfg.trainer.channels_last:  # as the run's session converts it
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":  # both loops copy from pinned memory, as the DataLoader gives them on CUDA
        batches = [(tuple(i.pin_memory() for i in imgs), tgts) for imgs, tgts in batches]
    images_per_epoch = args.steps * cfg.data.batch_size
    start_weights = copy.deepcopy(model.state_dict())

    def fresh_optimizer():
        model.load_state_dict(start_weights)
        optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer, resolve=True), model)
        scaler = torch.amp.GradScaler(device.type) if args.precision == "16-mixed" else None
        return optimizer, scaler

    def run_bare():
        optimizer, scaler = fresh_optimizer()
        return timed(lambda: bare_epoch(model, optimizer, batches, device, args.precision, scaler), device)

    def run_losslab():
        optimizer, scaler = fresh_optimizer()
        schedulers = build_schedulers(OmegaConf.to_container(cfg.scheduler, resolve=True), optimizer,
                                      steps_per_epoch=len(batches))
        with redirect_stderr(io.StringIO()):  # the bar is drawn (its cost counts) but not shown
            return timed(lambda: train_one_epoch(model, optimizer, batches, device, 1, progress=True,
                                                 step_schedulers=[schedulers], precision=args.precision,
                                                 scaler=scaler), device)

    def run_validation():
        return timed(lambda: validation_loss(model, batches, device, precision=args.precision), device)

    run_bare(), run_losslab()  # warm-up: allocator, cuDNN autotuning, lazy initialisation
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bare, ours, validation = [], [], []
    for _ in range(args.repeats):
        bare.append(run_bare())
        ours.append(run_losslab())
        validation.append(run_validation())
    busy = gpu_busy_percent(device, run_losslab)

    bare_ips = images_per_epoch / statistics.median(bare)
    ours_ips = images_per_epoch / statistics.median(ours)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}")
    print(f"model: {cfg.model.arch}/{cfg.model.backbone} at {image_size} px, batch {cfg.data.batch_size}, "
          f"{args.steps} steps x {args.repeats} repetitions, precision {args.precision}"
          f"{', channels_last' if cfg.trainer.channels_last else ''}")
    print(f"bare loop     {bare_ips:8.2f} images/s   (median of {[round(t, 2) for t in bare]} s)")
    print(f"losslab loop  {ours_ips:8.2f} images/s   (median of {[round(t, 2) for t in ours]} s)")
    print(f"ratio losslab/bare throughput: {ours_ips / bare_ips:.3f}  (target >= 0.98)")
    print(f"validation-loss pass / training epoch (same images): "
          f"{statistics.median(validation) / statistics.median(ours):.3f}  (target <= 0.45)")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
        if busy is not None:
            print(f"GPU busy during losslab's epoch: {busy:.0f}% (nvidia-smi)")
    else:
        print(f"peak process memory (RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

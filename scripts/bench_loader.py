"""Is data loading ever the bottleneck? Loader throughput against what the training step consumes.

Builds the configured run's train DataLoader and model (the default config, or Hydra overrides given on the
command line) and measures, interleaved over several repetitions:

- loader: images per second of iterating the train DataLoader alone, full passes over the train split,
  with the configured workers (persistent, so they stay up between passes; pinned memory on CUDA);
- training: images per second the training step consumes (forward, backward and optimizer step of the
  configured model and loss) on batches loaded beforehand.

It prints both medians and the ratio loader / training of each repetition (its median and its worst); the
target is a loader at least 5x faster than training.

    python scripts/bench_loader.py
    python scripts/bench_loader.py data.num_workers=2
    python scripts/bench_loader.py data=coco data.images=DIR data.annotations=FILE.json model=mask_rcnn
    python scripts/bench_loader.py --fake-coco 96 data.num_workers=2   # 96 made-up 640x480 JPEGs with polygons
    python scripts/bench_loader.py --reps 7 --steps 4 trainer.device=cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from losslab import build_data, build_dataloaders, build_model, compose_config
from losslab.modeling.runtime import resolve_device
from losslab.training.optim import build_optimizer


def loader_pass(loader) -> tuple[int, float]:
    """Images and seconds of one full pass over the loader."""
    start = time.perf_counter()
    images = sum(len(batch_images) for batch_images, _ in loader)
    return images, time.perf_counter() - start


def to_device(batch, device: torch.device):
    images, targets = batch
    return ([image.to(device) for image in images],
            [{k: v.to(device) if torch.is_tensor(v) else v for k, v in target.items()} for target in targets])


def training_steps(model, optimizer, batches: list, device: torch.device) -> tuple[int, float]:
    """Images and seconds of one training step on each of `batches` (already on the device)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for images, targets in batches:
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return sum(len(images) for images, _ in batches), time.perf_counter() - start


def write_fake_coco(folder: Path, count: int, width: int = 640, height: int = 480) -> list[str]:
    """`count` noisy JPEG images with 1-6 filled polygons each, and their COCO file; the overrides reading them."""
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(1, count + 1):
        picture = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(picture)
        for _ in range(rng.integers(1, 7)):
            x, y = rng.uniform(0, width - 120), rng.uniform(0, height - 120)
            points = [(x + dx, y + dy) for dx, dy in rng.uniform(0, 120, (6, 2))]
            draw.polygon(points, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(rng.integers(1, 4)),
                                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], "iscrowd": 0,
                                "segmentation": [[c for point in points for c in point]]})
        picture.save(folder / f"{i:04d}.jpg", quality=90)
        images.append({"id": i, "file_name": f"{i:04d}.jpg", "width": width, "height": height})
    categories = [{"id": k, "name": name} for k, name in enumerate(("a", "b", "c"), start=1)]
    (folder / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                       "categories": categories}))
    return ["data=coco", f"data.images={folder}", f"data.annotations={folder / 'instances.json'}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (medians reported)")
    parser.add_argument("--steps", type=int, default=3, help="training steps (batches) per repetition")
    parser.add_argument("--fake-coco", type=int, metavar="N", help="benchmark data=coco on N made-up JPEG images")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `train`")
    args = parser.parse_args()

    if args.fake_coco:
        with tempfile.TemporaryDirectory(prefix="bench_loader_") as folder:
            benchmark(write_fake_coco(Path(folder), args.fake_coco) + args.overrides, args.reps, args.steps)
    else:
        benchmark(args.overrides, args.reps, args.steps)


def benchmark(overrides: list[str], reps: int, steps: int) -> None:
    """Measure and print loader and training throughput of the run these overrides configure."""
    cfg = compose_config([*overrides, "trainer.progress=false"])
    device = resolve_device(cfg.trainer.device)
    data = build_data(cfg)
    loader = build_dataloaders(cfg, data)["train"]
    torch.manual_seed(cfg.trainer.seed)
    model = build_model(cfg, num_classes=len(data.classes)).to(device).train()
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer, resolve=True), model)
    batches = [to_device(batch, device) for batch, _ in zip(loader, range(steps), strict=False)]

    loader_pass(loader)  # warm-up: worker start-up, first-touch costs
    training_steps(model, optimizer, batches[:1], device)
    rates: dict[str, list[float]] = {"loader": [], "training": []}
    for _ in range(reps):
        images, seconds = loader_pass(loader)
        rates["loader"].append(images / seconds)
        images, seconds = training_steps(model, optimizer, batches, device)
        rates["training"].append(images / seconds)

    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"data={cfg.data.name} ({len(data.train)} train images), batch {cfg.data.batch_size}, "
          f"num_workers {cfg.data.num_workers}, pin_memory {loader.pin_memory}; model {cfg.model.arch}/"
          f"{cfg.model.backbone} {cfg.model.min_size}-{cfg.model.max_size}px on {device}, "
          f"{torch.get_num_threads()} threads; {reps} repetitions, medians")
    for name, values in rates.items():
        print(f"  {name:9s}{medians[name]:9.1f} images/s  (runs: {', '.join(f'{v:.1f}' for v in values)})")
    # Each repetition's two numbers were taken moments apart: their ratio is robust to other load on the machine.
    ratios = [loader / training for loader, training in zip(rates["loader"], rates["training"], strict=True)]
    ratio = statistics.median(ratios)
    print(f"  loader / training: {ratio:.1f}x median, {min(ratios):.1f}x worst of the repetitions "
          f"({'OK' if min(ratios) >= 5 else 'below'} the 5x target)")


if __name__ == "__main__":
    main()

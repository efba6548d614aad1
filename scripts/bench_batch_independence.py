"""What one image per forward costs the default run's validation against the batched forward it replaced.

    python scripts/bench_batch_independence.py [--repeats 3] [OVERRIDE ...]

On the default config (or the overrides given) with the model's initial weights, it times in interleaved
repetitions the validation-loss pass and the evaluation pass (predictions and COCO mAP) over the val split as
losslab runs them (`validation_loss`, `detection_metrics`: one image per forward) and as they ran before, one
forward per loader batch of data.batch_size images (written out below). Prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from losslab import build_data, build_dataloaders, build_model, compose_config
from losslab.evaluation.inference import detect, detection_metrics
from losslab.evaluation.metrics import score_detections
from losslab.modeling.runtime import eval_mode, loss_mode
from losslab.training.loop import RunningAverage, as_floats, named_losses, validation_loss


@torch.no_grad()
def batched_validation_loss(model, loader) -> dict[str, float]:
    average = RunningAverage()
    with loss_mode(model), torch.random.fork_rng():
        torch.manual_seed(0)
        for images, targets in loader:
            average.add(as_floats(named_losses(model(list(images), list(targets)))), len(images))
    return average.means()


@torch.inference_mode()
def batched_metrics(model, loader, classes) -> dict[str, float]:
    predictions, targets, sizes = [], [], []
    with eval_mode(model):
        for images, batch_targets in loader:
            predictions += detect(model, list(images))
            targets += batch_targets
            sizes += [tuple(image.shape[-2:]) for image in images]
    return score_detections(predictions, targets, sizes, classes, 0.5)[0]


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = compose_config(["trainer.device=cpu", *args.overrides])
    data = build_data(cfg)
    val = build_dataloaders(cfg, data)["val"]
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=len(data.classes))
    parts = {
        "validation loss, one image per forward": lambda: validation_loss(model, val),
        "validation loss, one forward per batch": lambda: batched_validation_loss(model, val),
        "evaluation, one image per forward": lambda: detection_metrics(model, val, data.classes),
        "evaluation, one forward per batch": lambda: batched_metrics(model, val, data.classes),
    }
    samples: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.repeats):
        for name, work in parts.items():
            samples[name].append(timed(work))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{len(val.dataset)} val images, batch size {cfg.data.batch_size}, {torch.get_num_threads()} threads")
    for name, seconds in medians.items():
        print(f"{name:<42} {seconds:7.2f} s")
    for what in ("validation loss", "evaluation"):
        ratio = medians[f"{what}, one image per forward"] / medians[f"{what}, one forward per batch"]
        print(f"{what}: one image per forward takes {ratio:.2f}x the batched time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the default `train task=segmentation` costs against the default detection `train`, on this machine.

Both defaults (their models, losses and first training batch) are timed step by step, interleaved A B A B over
several repetitions, for a training step (forward, backward, optimizer step) and an eval-mode forward of the
same batch. The medians' ratios hold on a loaded machine too (both see the same load); with the default
detection run's documented wall time they give the segmentation run's, by counting what each run does per epoch
(training steps; validation-loss passes; metrics passes on evaluated epochs).

    python scripts/bench_segmentation.py                    # CPU, 2 threads, as on a 2-core laptop
    python scripts/bench_segmentation.py --detection-minutes 2.5 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from losslab import build_dataloaders, build_model, compose_config
from losslab.modeling.runtime import loss_mode


def timed(function, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        function()
    return (time.perf_counter() - start) / steps


def workloads(overrides: list[str]):
    """(config, train step, eval forward, validation-loss forward) of a default config's first training batch."""
    cfg = compose_config([*overrides, "trainer.device=cpu", "trainer.progress=false"])
    torch.manual_seed(0)
    model = build_model(cfg)
    images, targets = next(iter(build_dataloaders(cfg)["train"]))
    images, targets = list(images), list(targets)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every repetition sees the same weights

    def train_step():
        model.train()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.inference_mode()
    def predict():
        model.eval()
        model(images)

    @torch.no_grad()
    def validation():
        with loss_mode(model):
            model(images, targets)

    return cfg, train_step, predict, validation


def epoch_seconds(cfg, train: float, predict: float, validation: float, reference_pass: bool) -> float:
    """One epoch's cost from per-batch times: the train split's steps, one validation-loss pass (two when the
    reference loss differs from the training loss) and, every eval.every epochs, one metrics pass over val."""
    train_batches = -(-round(cfg.data.num_images * cfg.split.train) // cfg.data.batch_size)
    val_batches = -(-round(cfg.data.num_images * cfg.split.val) // cfg.data.batch_size)
    metrics_share = 1 / cfg.eval.every if cfg.eval.every else 0.0
    return (train_batches * train + val_batches * validation * (2 if reference_pass else 1)
            + val_batches * predict * metrics_share)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (medians are reported)")
    parser.add_argument("--steps", type=int, default=2, help="steps per repetition")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--detection-minutes", type=float, default=2.5,
                        help="the default detection run's wall time on the machine to estimate for (README: 2.5 "
                             "minutes on 2 CPU cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = {"detection": workloads([]), "segmentation": workloads(["task=segmentation"])}
    times = {name: {"train": [], "predict": [], "validation": []} for name in runs}
    for _ in range(args.repeats):
        for name, (_, train, predict, validation) in runs.items():
            times[name]["train"].append(timed(train, args.steps))
            times[name]["predict"].append(timed(predict, args.steps))
            times[name]["validation"].append(timed(validation, args.steps))
    medians = {name: {kind: statistics.median(values) for kind, values in kinds.items()}
               for name, kinds in times.items()}
    for name, kinds in medians.items():
        print(f"{name:>12}: " + ", ".join(f"{kind} {value:.3f} s/batch" for kind, value in kinds.items()))
    total = {}
    for name, (cfg, *_) in runs.items():
        per_epoch = epoch_seconds(cfg, **medians[name], reference_pass=name == "segmentation")
        total[name] = per_epoch * cfg.trainer.max_epochs
        print(f"{name:>12}: {cfg.trainer.max_epochs} epochs x {per_epoch:.1f} s = {total[name]:.0f} s on this machine")
    ratio = total["segmentation"] / total["detection"]
    print(f"segmentation / detection default run: {ratio:.2f}; with the detection run at {args.detection_minutes:g} "
          f"minutes, the segmentation run takes about {ratio * args.detection_minutes:.1f} minutes there")


if __name__ == "__main__":
    main()

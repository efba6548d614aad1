"""What losslab's bookkeeping (checkpoints, metrics.csv, curves, console, summary, Hydra) costs a training run.

1. Whole process: `python -m losslab OVERRIDES` (the `train` command, as a user runs it) against a bare script
   (this one with --bare) that builds the same data and model and runs the same train steps, validation-loss
   passes and evaluations with losslab's loop functions, writes nothing, and ends as `train` ends (a normal
   interpreter exit). They run interleaved, train then bare, --repeats times (0: skip this part); the script
   prints the median wall and CPU times (user + system, the process and its DataLoader workers) and their ratios
   bare/train, with the load average each repetition ran under.
2. Per epoch, in one more `run(cfg)` in this process: the wall time outside the train steps and the
   validation/evaluation passes (the gap from the end of one epoch's passes to the start of the next one's),
   as a share of the epoch: the epoch's files (checkpoint, metrics.csv, console line, curves), written by the
   training process as the epoch ends, and the next epoch's start; and the time from the end of the last epoch's
   passes until `run` returns (the last epoch's files, reducing the checkpoints, summary.json, the report). It also
   prints what that finished run folder holds on disk: its size, and best.pt's size against the
   model's own state_dict serialised alone.

    python scripts/bench_bookkeeping.py                              # default config, 2 epochs, 5 repetitions
    python scripts/bench_bookkeeping.py --repeats 5 model=retinanet  # trailing arguments: train overrides
    python scripts/bench_bookkeeping.py --repeats 0 trainer.max_epochs=3   # only the per-epoch figures

The default config's epoch is 48 train images (12 steps) and a 24-image validation pass; eval.every=2 evaluates
the second epoch. Run on an otherwise idle machine: both processes compete for the same cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DEFAULTS = ["trainer.max_epochs=2"]


def bare(overrides: list[str]) -> None:
    """The run's train steps, validation passes and evaluations, and nothing else."""
    import torch
    from omegaconf import OmegaConf

    from losslab import build_data, build_dataloaders, build_model, compose_config
    from losslab.evaluation.inference import detection_metrics
    from losslab.modeling.runtime import resolve_device
    from losslab.training.loop import train_one_epoch, validation_loss
    from losslab.training.optim import build_optimizer, build_schedulers

    cfg = compose_config(overrides)
    device = resolve_device(cfg.trainer.device)
    torch.manual_seed(cfg.trainer.seed)
    data = build_data(cfg)
    loaders = build_dataloaders(cfg, data)
    model = build_model(cfg, num_classes=len(data.classes)).to(device)
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer, resolve=True), model)
    schedulers = build_schedulers(OmegaConf.to_container(cfg.scheduler, resolve=True), optimizer,
                                  steps_per_epoch=len(loaders["train"]))
    for epoch in range(1, cfg.trainer.max_epochs + 1):
        train_one_epoch(model, optimizer, loaders["train"], device, epoch, progress=False,
                        step_schedulers=[schedulers], precision=cfg.trainer.precision)
        losses = validation_loss(model, loaders["val"], device, seed=cfg.trainer.seed,
                                 precision=cfg.trainer.precision)
        if cfg.eval.every and epoch % cfg.eval.every == 0:
            detection_metrics(model, loaders["val"], data.classes, cfg.eval.score_threshold, device,
                              precision=cfg.trainer.precision)
        schedulers.end_epoch(losses["loss"])


def timed_process(command: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system, every thread) of `command` as a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_process(overrides: list[str], repeats: int, scratch: Path) -> tuple[list, list]:
    """Interleaved (wall, CPU) times of `train` and of the bare script, each a fresh process."""
    train, plain = [], []
    for repeat in range(repeats):
        run_dir = scratch / f"run{repeat}"
        train.append(timed_process([sys.executable, "-m", "losslab", *overrides, f"run_dir={run_dir}"]))
        shutil.rmtree(run_dir)
        plain.append(timed_process([sys.executable, __file__, "--bare", *overrides]))
        print(f"  repetition {repeat + 1}: train {train[-1][0]:.1f} s ({train[-1][1]:.1f} s CPU), "
              f"bare {plain[-1][0]:.1f} s ({plain[-1][1]:.1f} s CPU), load average {os.getloadavg()[0]:.1f}",
              flush=True)
    return train, plain


def per_epoch(overrides: list[str], run_dir: Path) -> tuple[list[tuple[float, float]], float, float]:
    """(gap outside the passes, epoch wall time) of every epoch but the last, the time after the last epoch's
    passes until run() returned, and the last epoch's passes."""
    import losslab.training.run as run_module
    from losslab import compose_config, run

    marks: list[tuple[float, float]] = []
    passes = run_module.run_epoch

    def timed_epoch(*args, **kwargs):
        start = time.perf_counter()
        row = passes(*args, **kwargs)
        marks.append((start, time.perf_counter()))
        return row

    run_module.run_epoch = timed_epoch
    try:
        run(compose_config([*overrides, f"run_dir={run_dir}"]))
        returned = time.perf_counter()
    finally:
        run_module.run_epoch = passes
    epochs = [(marks[i + 1][0] - end, marks[i + 1][0] - start) for i, (start, end) in enumerate(marks[:-1])]
    return epochs, returned - marks[-1][1], marks[-1][1] - marks[-1][0]


def folder_on_disk(run_dir: Path) -> str:
    """The finished run folder's size, its files, and best.pt against the model's state_dict serialised alone."""
    import io

    import torch

    from losslab.reporting.comparison import folder_size

    files = ", ".join(f"{p.relative_to(run_dir)} {p.stat().st_size / 1e6:.1f}" for p in sorted(run_dir.rglob("*.pt")))
    best = run_dir / "checkpoints" / "best.pt"
    state_dict = io.BytesIO()
    torch.save(torch.load(best, weights_only=True)["model"], state_dict)
    return (f"finished run folder: {folder_size(run_dir) / 1e6:.1f} MB ({files} MB); best.pt / the model's "
            f"state_dict = {best.stat().st_size / state_dict.tell():.4f} (targets: <= 150 MB, <= 1.05)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions of train and bare")
    parser.add_argument("--bare", action="store_true", help="run the bare script once (what the benchmark times)")
    parser.add_argument("overrides", nargs="*", help="train overrides (default: trainer.max_epochs=2)")
    args = parser.parse_args()
    overrides = [*BENCH_DEFAULTS, *args.overrides]
    if args.bare:
        bare(overrides)
        return
    with tempfile.TemporaryDirectory() as scratch:
        print(f"train {' '.join(overrides)}: whole process vs bare script, {args.repeats} interleaved repetitions")
        train, plain = whole_process(overrides, args.repeats, Path(scratch))
        epochs, tail, last = per_epoch(overrides, Path(scratch) / "epochs")
        on_disk = folder_on_disk(Path(scratch) / "epochs")
    for index, kind in enumerate(("wall", "CPU") if train else ()):
        trains, plains = [t[index] for t in train], [p[index] for p in plain]
        ratios = [p / t for t, p in zip(trains, plains, strict=True)]
        print(f"{kind} time: train {statistics.median(trains):.2f} s, bare {statistics.median(plains):.2f} s "
              f"(medians); ratio bare/train {statistics.median(plains) / statistics.median(trains):.3f} (per "
              f"repetition {', '.join(f'{r:.3f}' for r in ratios)}; target >= 0.95)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    for number, (gap, wall) in enumerate(epochs, start=1):
        print(f"epoch {number}: {gap * 1000:.0f} ms outside the passes of a {wall:.1f} s epoch = "
              f"{100 * gap / wall:.2f}% (target <= 2%)")
    print(f"after the last epoch's passes ({last:.1f} s): {tail:.2f} s until run() returned (the last epoch's "
          "files, checkpoints reduced, summary.json, report)")
    print(on_disk)


if __name__ == "__main__":
    main()

"""What evaluating every epoch costs: the epoch time of `train` with eval.every=1 (the default, which makes val/mAP
the selection metric) against eval.every=0 (no evaluation; val/ref_loss selects), same config otherwise.

    python scripts/bench_eval_schedule.py                      # the default `train` config, 2 epochs, 3 pairs
    python scripts/bench_eval_schedule.py --repeats 5 model=retinanet

The two runs alternate (A B A B ...) in fresh processes; each epoch's time_s (training pass, validation loss,
evaluation when on) comes from its metrics.csv. Prints the median epoch time of each and their ratio. Trailing
arguments are `train` overrides.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def epoch_times(overrides: list[str], folder: Path) -> list[float]:
    """Run `train` with `overrides` into `folder` and return its epochs' time_s."""
    command = [sys.executable, "-m", "losslab", *overrides, "trainer.progress=false", "trainer.checkpoints=none",
               f"run_dir={folder}"]
    subprocess.run(command, check=True, capture_output=True)
    with (folder / "metrics.csv").open() as f:
        return [float(row["time_s"]) for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs")
    parser.add_argument("--epochs", type=int, default=2)
    args, overrides = parser.parse_known_args()
    times: dict[str, list[float]] = {"1": [], "0": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for every in times:
                folder = Path(tmp) / f"every{every}_{repeat}"
                times[every] += epoch_times([*overrides, f"trainer.max_epochs={args.epochs}", f"eval.every={every}"],
                                            folder)
    on, off = statistics.median(times["1"]), statistics.median(times["0"])
    print(f"median epoch: {on:.1f} s evaluating every epoch, {off:.1f} s without evaluation "
          f"({len(times['1'])} epochs each); ratio {on / off:.3f}")


if __name__ == "__main__":
    main()

"""What trainer.grad_shares costs: the gradient-share probe's time as a share of an epoch's.

Sets up a run of the given config (in a temporary folder) and trains it for --epochs epochs with losslab's own
epoch function, the probe switched off inside it; after each epoch the probe (train/grad_share/*) is timed on its
own, on the run's probe batch, --repeats times (median). Prints each epoch's time (train steps, validation loss,
evaluation) and the probe's, and their ratio.

    python scripts/bench_grad_shares.py                          # default config, 1 epoch
    python scripts/bench_grad_shares.py --epochs 2 model=retinanet   # trailing arguments: train overrides

Run on an otherwise idle machine: the ratio is what matters, but a loaded one makes both times noisy.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="probe timings per epoch (median reported)")
    parser.add_argument("overrides", nargs="*", help="train overrides, e.g. model=retinanet")
    args = parser.parse_args()

    from losslab import compose_config
    from losslab.config.validation import validate
    from losslab.distributed import SINGLE_PROCESS
    from losslab.training.epoch import run_epoch
    from losslab.training.grad_shares import share_columns
    from losslab.training.session import setup

    plan = validate(compose_config(["trainer.progress=false", *args.overrides]))
    with tempfile.TemporaryDirectory() as folder:
        session = setup(plan, Path(folder), SINGLE_PROCESS)
        probe, session.grad_probe = session.grad_probe, None  # timed apart, not inside the epoch
        print(f"{len(session.loaders['train'].dataset)} train images in {len(session.loaders['train'])} steps, "
              f"{len(session.loaders['val'].dataset)} val images; probe batch of {len(probe.images)} images")
        ratios = []
        for epoch in range(1, args.epochs + 1):
            started = time.perf_counter()
            row = run_epoch(session, epoch, plan.seed, progress=False)
            epoch_s = time.perf_counter() - started
            times, columns = [], {}
            for _ in range(args.repeats):
                started = time.perf_counter()
                columns = share_columns(session.model, probe)
                times.append(time.perf_counter() - started)
            probe_s = statistics.median(times)
            ratios.append(probe_s / epoch_s)
            shown = ", ".join(f"{column.rsplit('/', 1)[-1]} {share:.3f}" for column, share in columns.items())
            print(f"epoch {epoch}: {epoch_s:.1f} s (evaluated: {'val/mAP' in row or 'val/mIoU' in row}); probe "
                  f"{probe_s:.2f} s (runs {', '.join(f'{t:.2f}' for t in times)}) = {100 * ratios[-1]:.2f}% of the "
                  f"epoch; shares {shown}")
        print(f"probe / epoch: median {100 * statistics.median(ratios):.2f}%")


if __name__ == "__main__":
    main()

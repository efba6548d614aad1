"""How long the command line takes to answer: help, tab completion and the commands that only read run folders.

    python scripts/bench_cli.py [--repeats 5]

Each command runs as a new process, the commands interleaved in every repetition; medians are printed with the
ratio to `python -c "import torch"` measured in the same repetitions (what every command paid before the command
line stopped importing torch). Target: every command under 1 s on a 2-core machine. For `losslab compare`, which
prints its ranking and then draws its figure (importing matplotlib), the time to the ranking is printed too. A
made-up outputs/ folder with two finished runs is the input of `losslab runs` and `losslab compare`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Commands whose answer comes before the rest of their work (compare ranks the runs, then draws the figure).
FIRST_ANSWER = {"losslab compare (2 runs)": "ranking shown"}
RUN_CONFIG = "model: {arch: retinanet, backbone: resnet18_fpn}\nloss: {cls: {name: focal}}\n"


def made_up_runs(root: Path) -> list[Path]:
    runs = []
    for index in range(2):
        run = root / "outputs" / "2026-12-01" / f"10-00-0{index}"
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text(RUN_CONFIG)
        (run / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={0.001 * (index + 1)}\n")
        (run / "summary.json").write_text(json.dumps({"status": "completed", "epochs_run": 3,
                                                      "best": {"val/loss": 1.0 + index}}))
        rows = [f"{epoch},{0.001},{2.0 - epoch / 10},{1.5 - epoch / 10 + index}" for epoch in (1, 2, 3)]
        (run / "metrics.csv").write_text("epoch,lr,train/loss,val/loss\n" + "\n".join(rows) + "\n")
        runs.append(run)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        runs = made_up_runs(root)
        commands = {
            "train --help": [bin_dir / "train", "--help"],
            "losslab --help": [bin_dir / "losslab", "--help"],
            "losslab runs": [bin_dir / "losslab", "runs", root / "outputs"],
            "losslab compare (2 runs)": [bin_dir / "losslab", "compare", *runs, "--out", root / "compared"],
            "tab completion (train loss/cls=)": [bin_dir / "train", "-sc", "query=bash"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        }
        env = {**os.environ, "COMP_LINE": "train loss/cls=", "COMP_POINT": "15"}
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        seconds |= {f"{name}: {answer}": [] for name, answer in FIRST_ANSWER.items()}
        for _ in range(args.repeats):
            for name, command in commands.items():
                start = time.perf_counter()
                process = subprocess.Popen([str(part) for part in command], stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, env=env, cwd=root)
                if name in FIRST_ANSWER:  # the time until its answer is on screen, then until it exits
                    process.stdout.readline()
                    seconds[f"{name}: {FIRST_ANSWER[name]}"].append(time.perf_counter() - start)
                process.communicate()
                assert process.returncode == 0, name
                seconds[name].append(time.perf_counter() - start)
    torch_import = statistics.median(seconds["python -c 'import torch'"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:42} {median:6.2f} s  ({median / torch_import:.2f}x importing torch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

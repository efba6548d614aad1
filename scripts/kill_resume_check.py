"""Kill `train` with SIGKILL at random moments while another process keeps a CPU core busy, resume each killed run,
and count the kills that lost a finished epoch.

An epoch is finished once its checkpoint is on disk; its console line and metrics.csv row come after the checkpoint,
so every epoch a killed run logged or wrote to metrics.csv must be in checkpoints/last.pt, `train resume=` must say
it resumes after that epoch, and the resumed run must end with every epoch once in metrics.csv. A run killed before
its first checkpoint must have logged no epoch, and resume must refuse it.

    python scripts/kill_resume_check.py              # 20 kills
    python scripts/kill_resume_check.py --kills 5 --seed 1

First one uninterrupted run measures how long a run takes here; each kill then comes at a moment drawn uniformly
from that span (a run that ended before its kill is counted apart). tests/training/test_resume.py runs one kill.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

OVERRIDES = ["data.num_images=10", "data.image_size=64", "data.max_objects=2", "data.batch_size=2",
             "model.min_size=64", "model.max_size=64", "model.box_batch_size_per_image=32", "trainer.progress=false",
             "trainer.device=cpu", "trainer.max_epochs=3", "model=retinanet"]
EPOCH_LINE = re.compile(r"\] epoch (\d+)/\d+ \|")
RESUMED = re.compile(r"resuming after epoch (\d+)")


def start_run(run_dir: Path, overrides: list[str] = OVERRIDES) -> subprocess.Popen:
    """`python -m losslab OVERRIDES run_dir=RUN_DIR` in its own process group (with any DataLoader workers)."""
    return subprocess.Popen([sys.executable, "-m", "losslab", *overrides, f"run_dir={run_dir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill(process: subprocess.Popen) -> bool:
    """SIGKILL the run's process group; False if the run had ended before."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # an ended but unreaped run still holds its group: no error
    return process.wait() == -signal.SIGKILL


@contextmanager
def busy_cpu():
    """Another process spinning on a core for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def logged_epochs(run_dir: Path) -> list[int]:
    """The epochs whose console line the run logged (its train.log), and those metrics.csv holds."""
    log = run_dir / "train.log"
    lines = [int(m.group(1)) for m in EPOCH_LINE.finditer(log.read_text())] if log.is_file() else []
    metrics = run_dir / "metrics.csv"
    rows = [int(line.split(",", 1)[0]) for line in metrics.read_text().splitlines()[1:]] if metrics.is_file() else []
    return sorted(set(lines) | set(rows))


def saved_epoch(run_dir: Path) -> int | None:
    """The epoch checkpoints/last.pt holds, if there is one."""
    import torch

    path = run_dir / "checkpoints" / "last.pt"
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) if path.is_file() else None


def check_kill(run_dir: Path, resume, max_epochs: int = 3) -> list[str]:
    """Judge a killed run in `run_dir`: `resume(run_dir)` runs `train resume=RUN_DIR` and returns its exit code and
    output. The problems found (a finished epoch lost, a resume message that names another epoch, an epoch missing
    or repeated after the resume); empty if none."""
    finished, saved = logged_epochs(run_dir), saved_epoch(run_dir)
    code, output = resume(run_dir)
    if saved is None:
        problems = [f"epoch {epoch} was logged but no checkpoint holds it" for epoch in finished]
        if code == 0 or RESUMED.search(output):
            problems.append(f"resume without a checkpoint did not refuse (exit {code}): {output[-500:]}")
        return problems
    problems = [f"epoch {epoch} was logged but the checkpoint holds epoch {saved}"
                for epoch in finished if epoch > saved]
    said = RESUMED.search(output)
    if said is None or int(said.group(1)) != saved:
        problems.append(f"resume did not say it resumes after epoch {saved}: {output[-500:]}")
    if code != 0:
        problems.append(f"resume failed (exit {code}): {output[-500:]}")
    elif (after := logged_epochs(run_dir)) != list(range(1, max_epochs + 1)):
        problems.append(f"after the resume metrics.csv and train.log hold epochs {after}")
    return problems


def resume_in_subprocess(run_dir: Path) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "losslab", f"resume={run_dir}"], capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    draw = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch, busy_cpu():
        started = time.monotonic()
        reference = start_run(Path(scratch) / "reference")
        if reference.wait() != 0:
            sys.exit("the uninterrupted run failed")
        span = time.monotonic() - started
        print(f"an uninterrupted run takes {span:.1f} s here (beside a busy-looping process)", flush=True)
        killed = lost = 0
        for number in range(1, args.kills + 1):
            run_dir = Path(scratch) / f"kill{number}"
            moment = draw.uniform(0, span)
            process = start_run(run_dir)
            time.sleep(moment)
            if not kill(process):
                print(f"kill {number}: the run ended before {moment:.1f} s; not counted", flush=True)
                continue
            killed += 1
            saved = saved_epoch(run_dir)
            problems = check_kill(run_dir, resume_in_subprocess)
            lost += bool(problems)
            print(f"kill {number} at {moment:.1f} s, checkpoint of epoch {saved}: "
                  f"{'; '.join(problems) or 'nothing lost'}", flush=True)
    print(f"{lost} of {killed} kills lost or misreported a finished epoch")
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()

"""Regenerate the README's sample output and figure from a real default run: nothing in them is typed.

    python scripts/update_doc_samples.py

Runs `train` with no arguments (the default run, a few minutes on 2 CPU cores) in a temporary folder, then puts
its console lines (the run folder line, the epoch lines, the closing line; the middle epochs elided) between the
README's `<!-- sample: train -->` and `<!-- end of sample -->` markers, with how long it took, and copies its
loss_curves.png to docs/loss_curves.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).parents[1]
START, END = "<!-- sample: train -->", "<!-- end of sample -->"
LINE = re.compile(r"^\[[^]]+\]\[INFO\] (.*)$")


def sample_lines(log: str, run_dir: Path) -> list[str]:
    """The run's INFO lines without their timestamps, the run folder shown as outputs/DATE/TIME."""
    lines = [match.group(1).replace(str(run_dir), "outputs/DATE/TIME") for line in log.splitlines()
             if (match := LINE.match(line))]
    epochs = [i for i, line in enumerate(lines) if line.startswith("epoch ")]
    if len(epochs) > 4:  # first three epochs, "...", the last
        lines = lines[:epochs[2] + 1] + ["..."] + lines[epochs[-1]:]
    return lines


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "outputs" / "DATE" / "TIME"
        load, started = os.getloadavg()[0], time.monotonic()
        result = subprocess.run([str(Path(sys.executable).parent / "train"), "trainer.progress=false",
                                 f"run_dir={run_dir}"], capture_output=True, text=True, cwd=folder)
        minutes = (time.monotonic() - started) / 60
        if result.returncode != 0:
            print(result.stdout[-3000:] + result.stderr[-3000:], file=sys.stderr)
            return result.returncode
        lines = sample_lines(result.stdout + result.stderr, run_dir)
        shutil.copyfile(run_dir / "loss_curves.png", ROOT / "docs" / "loss_curves.png")
    readme = ROOT / "README.md"
    text = readme.read_text()
    # The one figure the README gives for the default run: when, on how many cores, and how busy they were.
    block = (f"{START}\nThe default `train` (measured {date.today()}: {minutes:.1f} min wall time on "
             f"{os.cpu_count()} CPU cores, load average {load:.1f} when it started; "
             f"`python scripts/update_doc_samples.py` measures it and writes this):\n\n```\n" + "\n".join(lines)
             + f"\n```\n{END}")
    updated, count = re.subn(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    if count != 1:
        print(f"README.md needs exactly one {START} ... {END} block; found {count}", file=sys.stderr)
        return 1
    readme.write_text(updated)
    print(f"README.md sample and docs/loss_curves.png updated from a {minutes:.1f} min default run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

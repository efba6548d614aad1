"""The command line answers without loading torch: help, tab completion, and the commands on finished runs that
only read files. (Speed itself is measured by scripts/bench_cli.py, never by a timed test.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Runs an entry point in a fresh interpreter and reports, at exit, whether torch was ever imported.
PROBE = """
import atexit, sys
atexit.register(lambda: print("TORCH_IMPORTED" if "torch" in sys.modules else "NO_TORCH", file=sys.stderr))
from losslab import cli
sys.argv = {argv!r}
sys.exit(cli.{entry}() if {entry!r} == "main" else cli.{entry}())
"""


def probe(entry: str, argv: list[str], env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    code = PROBE.format(entry=entry, argv=argv)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize(("entry", "argv", "expected"), [
    ("train", ["train", "--help"], "== Config groups"),
    ("main", ["losslab", "train", "--help"], "== Config groups"),
    ("main", ["losslab", "--help"], "show-augment"),
    ("main", ["losslab", "compare", "--help"], "--metric"),
])
def test_help_loads_no_torch(entry, argv, expected):
    result = probe(entry, argv)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert "NO_TORCH" in result.stderr


def test_tab_completion_loads_no_torch_and_completes_generated_options():
    result = probe("train", ["train", "-sc", "query=bash"], env={"COMP_LINE": "train loss/cls=", "COMP_POINT": "15"})
    assert "loss/cls=focal" in result.stdout and "loss/cls=default" in result.stdout
    assert "NO_TORCH" in result.stderr


def test_listing_runs_loads_no_torch(tmp_path):
    run = tmp_path / "outputs" / "2026-12-01" / "10-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / "summary.json").write_text('{"status": "completed", "epochs_run": 2, "best": {"val/loss": 1.5}}')
    (run / ".hydra" / "config.yaml").write_text("model: {arch: retinanet, backbone: resnet18_fpn}\n")
    result = probe("main", ["losslab", "runs", str(tmp_path / "outputs")])
    assert result.returncode == 0, result.stderr
    assert "retinanet (resnet18_fpn)" in result.stdout and "1.5000" in result.stdout
    assert "NO_TORCH" in result.stderr


# Marks each line `losslab compare` prints once matplotlib is imported.
RANKING_PROBE = """
import sys
from losslab import cli
write = sys.stdout.write
sys.stdout.write = lambda text: write("".join(("PLOTTING " if "matplotlib" in sys.modules and line.strip() else "")
                                              + line for line in text.splitlines(keepends=True)))
sys.exit(cli.main({argv!r}))
"""


def test_compare_shows_its_ranking_before_it_imports_matplotlib_for_its_figure(tmp_path):
    from conftest import fake_run

    runs = [fake_run(tmp_path / name, [f"optimizer.lr={lr}"], [{"epoch": 1, "val/loss": loss, "train/loss": 2.0}])
            for name, lr, loss in (("a", 0.001, 1.5), ("b", 0.002, 1.2))]
    code = RANKING_PROBE.format(argv=["compare", *map(str, runs), "--out", str(tmp_path / "compared")])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    ranking = [line for line in lines if "optimizer.lr=" in line]
    assert len(ranking) == 2 and "optimizer.lr=0.002" in ranking[0]  # the lower val/loss first
    assert lines[0].startswith("ranked by val/loss")
    assert not any(line.startswith("PLOTTING") for line in [lines[0], *ranking])
    assert lines[-2].startswith("PLOTTING table:") and lines[-1].startswith("PLOTTING figure:")
    assert (tmp_path / "compared" / "comparison.png").stat().st_size > 1000


# An entry point whose standard output is a pipe nobody reads any more, as `| head -1` leaves it once head has its line.
CLOSED_PIPE_PROBE = """
import sys
from losslab import cli
sys.argv = {argv!r}
cli.{entry}()
"""


def closed_pipe(entry: str, argv: list[str]) -> subprocess.CompletedProcess:
    reader, writer = os.pipe()
    os.close(reader)  # closed before the command prints: its first write meets EPIPE, every time
    try:
        return subprocess.run([sys.executable, "-c", CLOSED_PIPE_PROBE.format(entry=entry, argv=argv)], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writer)


def test_a_pipe_closed_early_ends_each_command_quietly_and_compare_still_writes_its_files(tmp_path):
    from conftest import fake_run

    runs = [fake_run(tmp_path / name, [f"optimizer.lr={lr}"], [{"epoch": 1, "val/loss": loss, "train/loss": 2.0}])
            for name, lr, loss in (("a", 0.001, 1.5), ("b", 0.002, 1.2))]
    # Exit code 1 as Python's on EPIPE; argparse's --help ignores a failed write itself and exits 0.
    for entry, argv, code in (
            ("train_script", ["train", "--help"], 1), ("losslab_script", ["losslab", "runs", str(tmp_path)], 1),
            ("losslab_script", ["losslab", "--help"], 0), ("losslab_script", ["losslab", "compare", "--help"], 0),
            ("losslab_script", ["losslab", "compare", *map(str, runs), "--out", str(tmp_path / "c")], 1)):
        ended = closed_pipe(entry, argv)
        assert ended.stderr == "" and ended.returncode == code, (argv, ended.stderr)
    assert (tmp_path / "c" / "comparison.csv").is_file()
    assert (tmp_path / "c" / "comparison.png").stat().st_size > 1000

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

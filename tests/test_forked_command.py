"""The forked runner the docs and CLI tests run `train` and `losslab` with (tests/forked_command.py) gives what the
installed script gives: a test passing on a fork would pass on the script."""

from __future__ import annotations

import os
import subprocess

from forked_command import BIN, run_forked


def test_a_forked_command_gives_the_exit_code_and_output_of_the_installed_script(tmp_path):
    """A wrong argument fails with the script's exit code and message; help succeeds."""
    wrong = run_forked([str(BIN / "train"), "model=nope"], cwd=tmp_path, env=dict(os.environ), timeout=120)
    direct = subprocess.run([str(BIN / "train"), "model=nope"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert wrong.returncode == direct.returncode == 1
    assert "nope" in wrong.stdout + wrong.stderr
    assert (wrong.stdout + wrong.stderr).strip() == (direct.stdout + direct.stderr).strip()
    helped = run_forked([str(BIN / "losslab"), "--help"], cwd=tmp_path, env=dict(os.environ), timeout=120)
    assert helped.returncode == 0 and "evaluate" in helped.stdout

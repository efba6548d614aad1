"""Every shell command and Python snippet of README.md and docs/*.md does what the docs say, run as a user would
type it, with tiny settings (tests/docs/doc_world.py says exactly what is changed; `train` and `losslab` run in
the test process, tests/in_process.py). The commands of a document run in order in
one working folder, so later ones use the runs earlier ones made.

Marked `docs`: `pytest -m "not docs"` skips them locally; CI (`pytest -q`) always runs them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from doc_world import (
    BIN,
    DOCUMENTS,
    ROOT,
    TINY,
    World,
    code_blocks,
    environment,
    make_assets,
    seed_folder,
    shell_commands,
)

from in_process import run_command, train

# The package's console scripts run in the test process (in_process.py): the same entry point, without a new
# interpreter's five seconds of imports per command.
CONSOLE_SCRIPTS = (str(BIN / "train"), str(BIN / "losslab"))

pytestmark = pytest.mark.docs


@pytest.fixture(scope="module")
def shared(module_tmp_path):
    """Tiny data, one finished run and one finished sweep, made once for every document."""
    from losslab import compose_config, run

    assets = module_tmp_path
    make_assets(assets)
    tiny = [f"{key}={value}" for key, value in TINY.items()]
    run_dir = run(compose_config([*tiny, "trainer.keep_resume_state=true", f"run_dir={assets / 'run'}"])).run_dir
    sweep = assets / "sweep"
    result = train("-m", "loss=default,focal", *tiny, f"hydra.sweep.dir={sweep}", cwd=assets)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return assets, run_dir, sweep


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_documented_command_runs(document, shared, tmp_path):
    assets, run_dir, sweep = shared
    seed_folder(tmp_path, run_dir, sweep, document)
    world = World(assets, tmp_path)
    ran = 0
    for block in code_blocks(document):
        if block.language == "python":
            world.link_export()
            result = subprocess.run([sys.executable, "-c", world.python_source(block.text)], capture_output=True,
                                    text=True, cwd=tmp_path, timeout=600)
            assert result.returncode == 0, f"{block.where}: the snippet failed:\n{result.stderr[-3000:]}"
            ran += 1
            continue
        for command in shell_commands(block):
            if command.cannot_run_here:
                continue
            argv = world.argv(command)
            if argv[0] in CONSOLE_SCRIPTS:
                result = run_command(argv, cwd=tmp_path, env=environment(world))
            else:
                result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=900,
                                        env=environment(world))
            said = f"{block.where}: `{command.text}` (ran as {' '.join(argv)})"
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"{said} failed:\n{output[-3000:]}"
            assert "Traceback" not in output, f"{said} printed a traceback:\n{output[-3000:]}"
            ran += 1
    assert ran or not code_blocks(document)


def test_commands_that_cannot_run_here_are_few_and_marked():
    skipped = [command.text for document in DOCUMENTS for block in code_blocks(document) if block.language == "bash"
               for command in shell_commands(block) if command.cannot_run_here]
    assert len(skipped) <= 8, skipped

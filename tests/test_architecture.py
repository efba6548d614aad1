"""The layers' dependency rule, checked by importing each layer in a fresh interpreter and looking at what it
pulled in: commands -> training -> evaluation, reporting, config -> modeling, data, losses -> nothing of ours.
Inference never imports the training orchestration; Hydra and OmegaConf stay in config, the run orchestration
and the commands; the command line imports neither torch nor any command before one runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import losslab

PACKAGE = Path(losslab.__file__).parent
BASE = {"losslab", "losslab.errors", "losslab.distributed", "losslab.run_lock"}

# layer -> the losslab packages its modules may import (besides BASE and themselves)
ALLOWED = {
    "losslab.losses": set(),
    "losslab.data": set(),
    "losslab.modeling": {"losslab.losses"},
    "losslab.reporting": {"losslab.losses"},
    "losslab.config": {"losslab.losses", "losslab.data"},
    "losslab.evaluation": {"losslab.losses", "losslab.modeling", "losslab.data", "losslab.config"},
    "losslab.training": {"losslab.losses", "losslab.modeling", "losslab.data", "losslab.config", "losslab.evaluation",
                         "losslab.reporting"},
}
WITHOUT_HYDRA = ("losslab.losses", "losslab.data", "losslab.modeling", "losslab.reporting")
INFERENCE = ("losslab.evaluation", "losslab.commands.evaluate", "losslab.commands.predict", "losslab.commands.export")


def modules_of(package: str) -> list[str]:
    folder = PACKAGE / package.removeprefix("losslab.")
    return [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py")) if path.stem != "__init__"]


def imported_after(modules: list[str]) -> set[str]:
    """Every module in sys.modules after importing `modules` in a fresh interpreter."""
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def losslab_packages(modules: set[str]) -> set[str]:
    return {".".join(name.split(".")[:2]) for name in modules if name.startswith("losslab.")}


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(layer):
    loaded = imported_after(modules_of(layer))
    outside = losslab_packages(loaded) - ALLOWED[layer] - BASE - {layer}
    assert not outside, f"{layer} imports {sorted(outside)}"
    if layer in WITHOUT_HYDRA:
        assert not {"hydra", "omegaconf"} & loaded, f"{layer} imports Hydra or OmegaConf"


def test_inference_never_imports_the_training_orchestration():
    loaded = imported_after([*modules_of("losslab.evaluation"), *INFERENCE[1:]])
    assert not {name for name in loaded if name.startswith("losslab.training")}


def test_the_command_line_and_composition_import_no_torch_and_no_command():
    loaded = imported_after(["losslab", "losslab.cli", "losslab.config.compose", "losslab.config.schema"])
    assert not {"torch", "torchvision", "matplotlib"} & loaded
    assert not {name for name in loaded if name.startswith("losslab.commands")}


def test_every_package_says_what_lives_there_and_what_it_may_import():
    for package in [*ALLOWED, "losslab.commands"]:
        doc = (PACKAGE / package.removeprefix("losslab.") / "__init__.py").read_text()
        assert doc.startswith('"""') and "import" in doc.lower(), package
    assert len([p for p in PACKAGE.glob("*.py")]) <= 6

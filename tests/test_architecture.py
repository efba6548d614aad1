"""The layers' dependency rule: commands -> training -> config -> tasks -> evaluation, reporting -> modeling, data,
losses -> nothing of ours. Checked twice: every import statement of a layer's modules, those inside functions
included, read from the source; and what importing each layer in a fresh interpreter pulls in. Training, evaluation
and modeling import nothing of config but the plan's types. Inference never imports the training orchestration;
Hydra and OmegaConf stay in config, the run orchestration and the commands; the command line imports neither torch
nor any command before one runs; no module outside losslab.tasks compares a task name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import losslab

PACKAGE = Path(losslab.__file__).parent
BASE = {"losslab", "losslab.errors", "losslab.distributed", "losslab.run_lock"}

# layer -> the losslab packages its modules may import (besides BASE and themselves)
LOWER = {"losslab.losses", "losslab.data", "losslab.modeling", "losslab.evaluation", "losslab.reporting"}
ALLOWED = {
    "losslab.losses": set(),
    "losslab.data": {"losslab.losses"},  # the loss catalogue's plain data: the void label IGNORE_INDEX
    "losslab.modeling": {"losslab.losses"},
    "losslab.reporting": {"losslab.losses"},
    "losslab.evaluation": {"losslab.losses", "losslab.modeling", "losslab.data"},
    "losslab.tasks": LOWER,
    "losslab.config": LOWER | {"losslab.tasks"},
    "losslab.training": LOWER | {"losslab.tasks", "losslab.config"},
}
PLAN = "losslab.config.plan"  # the only module of config that training, evaluation and modeling may import
PLAN_ONLY = ("losslab.training", "losslab.evaluation", "losslab.modeling")
WITHOUT_HYDRA = ("losslab.losses", "losslab.data", "losslab.modeling", "losslab.reporting")
INFERENCE = ("losslab.evaluation", "losslab.commands.evaluate", "losslab.commands.predict", "losslab.commands.export")


def modules_of(package: str) -> list[str]:
    folder = PACKAGE / package.removeprefix("losslab.")
    return [f"{package}.{path.stem}" for path in sorted(folder.glob("*.py")) if path.stem != "__init__"]


def imported_names(package: str) -> dict[str, set[str]]:
    """The losslab modules each module of `package` imports, at its top or inside a function, from its source."""
    names = {}
    for module in modules_of(package) + [f"{package}.__init__"]:
        tree = ast.parse((PACKAGE / module.removeprefix("losslab.").replace(".", "/")).with_suffix(".py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        names[module] = {name for name in found if name.startswith("losslab.")}
    return names


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


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_no_import_statement_reaches_above_its_layer_not_even_inside_a_function(layer):
    for module, names in imported_names(layer).items():
        outside = losslab_packages(names) - ALLOWED[layer] - BASE - {layer}
        assert not outside, f"{module} imports {sorted(outside)}"
        if layer in PLAN_ONLY:
            config = {name for name in names if name.startswith("losslab.config")} - {"losslab.config", PLAN}
            config = {name for name in config if not name.startswith(f"{PLAN}.")}
            assert not config, f"{module} imports {sorted(config)}: only the plan ({PLAN}) may be imported from config"


def test_no_module_outside_the_tasks_compares_a_task_name():
    from losslab.tasks import TASKS

    names = {task.name for task in TASKS}
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "tasks":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            compared = []
            if isinstance(node, ast.Compare):
                compared = [node.left, *node.comparators]
            elif isinstance(node, ast.Dict):  # a table keyed by task name is a comparison in disguise
                compared = [key for key in node.keys if key is not None]
            for operand in compared:
                elements = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
                literals = {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                assert not literals & names, f"{path.relative_to(PACKAGE)}:{node.lineno} compares a task name"


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

"""One truth per default: the loss catalogue, the functions' signatures, the generated options, the help, the docs
and the comments of conf/train.yaml agree, and every optimizer and scheduler option passes its torch signature."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from losslab import compose_config
from losslab.config.compose import config_dir
from losslab.config.validation import validate
from losslab.losses.catalogue import CATALOGUE

DOCS = Path(__file__).parents[2] / "docs"
LOSS_ROWS = {"classification (`cls`)": "cls", "box regression (`box`)": "box",
             "RPN objectness (`objectness`)": "objectness", "mask (`mask`)": "mask",
             "centre-ness (`centerness`, FCOS)": "centerness",
             "pixel (`pixel`, task=segmentation)": "pixel"}


def shown(value) -> str:
    """How docs/losses.md writes a default (as YAML does: null, true, false)."""
    if value is None or isinstance(value, bool):
        return str(value).lower().replace("none", "null")
    if isinstance(value, float) and value == 1 / 9:
        return "1/9"
    return f"{value:g}" if isinstance(value, float) else str(value)


@pytest.mark.parametrize(("key", "name"), [(key, name) for key, losses in CATALOGUE.items() for name in losses])
def test_each_loss_function_takes_the_catalogues_parameters_with_its_defaults(key, name):
    loss = CATALOGUE[key][name]
    module = importlib.import_module(f"losslab.losses.{loss.module}")
    for function_name in filter(None, (loss.function, loss.retinanet_function)):
        parameters = inspect.signature(getattr(module, function_name)).parameters
        for param, default in loss.defaults.items():
            if param == "weights":  # weighted_ce's weights become cross_entropy's `weight` tensor
                continue
            assert parameters[param].default == default, (function_name, param)
    task = ["task=segmentation"] if key == "pixel" else []
    option = OmegaConf.to_container(compose_config([*task, f"loss/{key}={name}"]).loss[key])
    assert option == {"name": name, **loss.defaults}


def _loss_table(parameter: str) -> dict[tuple[str, str], dict[str, str]]:
    """docs/losses.md's loss table: {(key, name): {parameter: what `parameter` (a regex of two groups) finds}}."""
    documented: dict[tuple[str, str], dict[str, str]] = {}
    key = None
    for line in (DOCS / "losses.md").read_text().splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<=\s)\|(?=\s)", line.strip().strip("|"))]
        if len(cells) != 5 or not cells[1].startswith("`"):
            continue
        key = LOSS_ROWS.get(cells[0], key)
        for name in re.findall(r"`(\w+)`", cells[1]):
            documented[(key, name)] = dict(re.findall(parameter, cells[3]))
    return documented


def test_the_loss_table_of_the_docs_lists_every_loss_with_its_defaults():
    documented = _loss_table(r"`(\w+)=([^`]+)`")
    expected = {(key, name): {p: shown(v) for p, v in loss.defaults.items()}
                for key, losses in CATALOGUE.items() for name, loss in losses.items()}
    expected |= {(key, "default"): {} for key in CATALOGUE}
    assert documented == expected


def test_the_loss_table_of_the_docs_states_each_parameters_range():
    documented = _loss_table(r"`(\w+)=[^`]+` \(((?:in |>)[^)]*\]?)\)")
    expected = {(key, name): {p: str(param.range) for p, param in loss.params.items() if param.range}
                for key, losses in CATALOGUE.items() for name, loss in losses.items()}
    expected |= {(key, "default"): {} for key in CATALOGUE}
    assert documented == expected
    assert expected[("cls", "focal")] == {"alpha": "in [0, 1] or -1", "gamma": ">= 0"}


def group_options(group: str) -> set[str]:
    return {path.stem for path in (config_dir() / group).glob("*.yaml")}


def test_the_comments_of_train_yaml_list_every_option_of_every_group():
    text = (config_dir() / "train.yaml").read_text()
    for line in re.search(r"defaults:\n((?:  - .*\n)+)", text).group(1).splitlines():
        found = re.match(r"\s+- (\w+): (\w+)\s+# (.*)", line)
        if not found or found.group(1) in ("trainer",):
            continue
        group, comment = found.group(1), found.group(3).split(";")[0]
        listed = set(re.findall(r"\b(\w+)\b(?= \||$| \(|,|;)", comment)) | set(re.findall(r"\| (\w+)", comment))
        if group in ("experiment", "hparams_search"):
            listed = set(re.findall(r"\((\w+(?: \| \w+)*)\)", comment)[0].split(" | "))
        assert group_options(group) <= listed, (group, group_options(group) - listed)


@pytest.mark.parametrize("option", sorted(group_options("optimizer")))
def test_every_optimizer_option_passes_its_torch_signature(option):
    validate(compose_config([f"optimizer={option}"]))


@pytest.mark.parametrize("option", sorted(group_options("scheduler")))
def test_every_scheduler_option_passes_its_torch_signature(option):
    validate(compose_config([f"scheduler={option}"]))


def test_schemas_hold_types_only_so_each_value_comes_from_one_yaml():
    from dataclasses import MISSING, fields

    from losslab.config import schema

    for cls in (schema.ModelConfig, schema.TrainerConfig, schema.DataConfig, schema.ShapesDataConfig,
                schema.CocoDataConfig, schema.VocDataConfig, schema.RandomSplitConfig, schema.LoggerConfig,
                schema.EvalConfig, schema.SweepConfig, schema.LossWeights):
        for field in fields(cls):
            assert field.default in (MISSING, "???") and field.default_factory is MISSING or \
                field.default_factory is not MISSING, (cls.__name__, field.name)


def test_key_tables_of_the_configuration_docs_give_the_composed_defaults():
    cfg = compose_config([])
    checked = 0
    for line in (DOCS / "configuration.md").read_text().splitlines():
        found = re.match(r"\| `([a-z_]+\.[\w.]+)` \| `([^`]+)` \|", line)
        if not found or OmegaConf.select(cfg, found.group(1), default="absent") == "absent":
            continue
        key, documented = found.groups()
        value = OmegaConf.select(cfg, key)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        renderings = {str(value), yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")}
        assert documented in renderings, (key, documented, value)
        checked += 1
    assert checked >= 25

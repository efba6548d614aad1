"""Composition: defaults, group options, schema validation, and the CLI's errors for bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from in_process import train
from losslab import compose_config
from losslab.config.compose import config_dir
from losslab.config.schema import loss_options

GROUPS = ["model", "loss", "split", "data", "augment", "optimizer", "scheduler", "trainer", "logger"]


def test_defaults_name_every_group_and_are_small_and_from_scratch():
    cfg = compose_config()
    assert all(group in cfg for group in GROUPS)
    assert cfg.model.arch == "faster_rcnn"
    assert cfg.model.backbone == "resnet18_fpn"
    assert cfg.model.pretrained is False
    assert cfg.data.name == "shapes"
    assert cfg.loss.cls.name == "default"
    assert cfg.optimizer._target_ == "torch.optim.AdamW"


def test_train_yaml_defaults_list_is_a_commented_table_of_contents():
    text = (config_dir() / "train.yaml").read_text()
    defaults = re.search(r"defaults:\n((?:  - .*\n)+)", text).group(1).splitlines()
    groups = [m.group(1) for line in defaults if (m := re.match(r"\s+- (\w+): ", line))]
    assert groups == [*GROUPS, "task", "experiment", "hparams_search"]
    assert "experiment: null" in text
    keys = [line for line in text.splitlines() if re.match(r"^\s*[\w]+:\s*\S", line)]
    assert keys and all("#" in line for line in keys), [line for line in keys if "#" not in line]


@pytest.mark.parametrize(
    ("overrides", "path", "expected"),
    [
        (["model=retinanet"], "model.arch", "retinanet"),
        (["model=mask_rcnn", "model.backbone=mobilenet_v3_fpn"], "model.backbone", "mobilenet_v3_fpn"),
        (["loss=focal"], "loss.cls.name", "focal"),
        (["loss=focal", "loss.cls.gamma=3"], "loss.cls.gamma", 3.0),
        (["optimizer=sgd", "optimizer.lr=0.005"], "optimizer.lr", 0.005),
        (["scheduler=step", "scheduler.step_size=2"], "scheduler.step_size", 2),
        (["experiment=quickstart"], "trainer.max_epochs", 12),
    ],
)
def test_group_options_and_overrides(overrides, path, expected):
    from omegaconf import OmegaConf

    assert OmegaConf.select(compose_config(overrides), path) == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.min_size=abc", "abc"),
        ("model.no_such_key=1", "no_such_key"),
        ("loss.cls.gamma=2", "gamma"),  # the default classification loss has no gamma
        ("trainer.max_epochs=1.5", "max_epochs"),
    ],
)
def test_wrong_type_or_unknown_key_fails_at_composition(override, message):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config([override])
    assert message in str(error.value) + str(error.value.__cause__)


EXAMPLE_CONF = Path(__file__).parents[2] / "examples" / "polyloss" / "conf"


def test_a_custom_loss_takes_a_target_and_any_parameters():
    from omegaconf import OmegaConf

    cfg = compose_config(["loss/box=custom", "loss.box._target_=myloss.box_loss", "+loss.box.eps=0.1",
                          "+loss.box.weights=[1,2]"])
    assert OmegaConf.to_container(cfg.loss.box) == {"name": "custom", "_target_": "myloss.box_loss", "eps": 0.1,
                                                    "weights": [1, 2]}
    with pytest.raises(ConfigCompositionException, match=re.escape("+loss.box.eps=0.1")):
        compose_config(["loss/box=custom", "loss.box._target_=myloss.box_loss", "loss.box.eps=0.1"])


def test_a_config_dir_holds_the_users_loss_options_and_presets():
    from omegaconf import OmegaConf

    search = f"hydra.searchpath=[file://{EXAMPLE_CONF}]"  # what `train --config-dir DIR` adds
    cfg = compose_config([search, "loss=poly1_giou", "loss.cls.epsilon=2.0"])
    assert OmegaConf.to_container(cfg.loss.cls) == {"name": "custom", "_target_": "polyloss.poly1_cross_entropy",
                                                    "epsilon": 2.0}
    assert cfg.loss.box.name == "giou" and cfg.loss.objectness.name == "default"
    focal = compose_config([search, "model=retinanet", "loss/cls=poly1_focal"]).loss.cls
    assert OmegaConf.to_container(focal) == {"name": "custom", "_target_": "polyloss.poly1_focal", "epsilon": 1.0,
                                             "alpha": 0.25, "gamma": 2.0}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss/cls=custom"], "loss.cls: a custom loss needs loss.cls._target_=MODULE.NAME, your loss function or "
                              "class"),
        (["loss/box=giou", "+loss.box._target_=myloss.box_loss"],
         "loss.box._target_=myloss.box_loss: only loss/box=custom takes a _target_"),
        (["+loss.schedule.phases=[{epochs: 1, losses: {mask: {name: custom}}}]"],
         "loss.schedule.phases[0].losses.mask: a custom loss needs loss.schedule.phases[0].losses.mask._target_"),
        (["+loss.schedule.phases=[{epochs: 1, losses: {cls: {name: poly1}}}]"],
         "loss.schedule.phases[0].losses.cls.name=poly1: expected one of default, ce, weighted_ce, bce, focal, "
         "hinge, custom"),
    ],
)
def test_a_loss_choice_that_names_no_loss_is_a_configuration_error(overrides, message):
    from losslab.config.validation import validate
    from losslab.errors import LosslabError

    with pytest.raises(LosslabError, match=re.escape(message)):
        validate(compose_config(overrides))


def _train_cli(*args, cwd):
    return train(*args, cwd=cwd)


def test_cli_unknown_model_lists_the_choices_without_traceback(tmp_path):
    result = _train_cli("model=nope", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "nope" in output
    assert all(name in output for name in ("faster_rcnn", "mask_rcnn", "retinanet"))
    assert "Traceback" not in output
    assert not (tmp_path / "outputs").exists()


def test_cli_bad_type_names_value_and_type_without_traceback(tmp_path):
    result = _train_cli("trainer.max_epochs=abc", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "trainer.max_epochs=abc" in output and "Integer" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.lr=abc"], "optimizer.lr='abc': expected a float like its default"),
        (["++optimizer.momentum=0.9"], "optimizer.momentum: torch.optim.AdamW has no argument 'momentum'; its "
                                       "arguments are lr, betas"),
        (["optimizer=sgd", "++optimizer.nesterov=1"], "optimizer.nesterov=1: expected a bool"),
        (["optimizer._target_=os.system"], "optimizer._target_=os.system: expected a class of torch.optim"),
        (["scheduler=step", "++scheduler.gama=0.5"], "scheduler.gama: torch.optim.lr_scheduler.StepLR has no argument"),
        (["scheduler=step", "~scheduler.step_size"], "scheduler.step_size: StepLR needs it"),
    ],
)
def test_optimizer_and_scheduler_keys_are_checked_against_torch_signatures(overrides, message):
    from losslab.config.validation import validate
    from losslab.errors import LosslabError

    with pytest.raises(LosslabError, match=re.escape(message)):
        validate(compose_config(overrides))


def test_any_torch_argument_can_be_set_and_reaches_the_optimizer():
    import torch

    from losslab.training.optim import build_optimizer

    cfg = compose_config(["optimizer=sgd", "++optimizer.nesterov=true", "optimizer.momentum=0.5"])
    optimizer = build_optimizer(dict(cfg.optimizer), torch.nn.Linear(2, 2))
    assert optimizer.param_groups[0]["nesterov"] is True and optimizer.param_groups[0]["momentum"] == 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.weights=coco"], "model.weights=coco: torchvision has COCO weights for model=faster_rcnn with "
                                 "model.backbone=resnet50_fpn (variant v1 or v2) or mobilenet_v3_fpn (variant v1), "
                                 "not with resnet18_fpn (variant v1); add model.backbone=resnet50_fpn"),
        (["model=retinanet", "model.backbone=mobilenet_v3_fpn", "model.weights=coco"],
         "torchvision has COCO weights for model=retinanet with model.backbone=resnet50_fpn (variant v1 or v2), not"),
        (["model.variant=v2"], "model.variant=v2 is torchvision's improved R50-FPN architecture; it needs "
                               "model.backbone=resnet50_fpn, not resnet18_fpn"),
        (["model.variant=v3"], "model.variant=v3: expected v1 or v2"),
        (["model.backbone=resnet50_fpn", "model.weights=coco", "model.pretrained=true"],
         "model.pretrained=true downloads ImageNet backbone weights that model.weights=coco replaces"),
        (["model.freeze=head"], "model.freeze=head: expected one of backbone, fpn, rpn or a list of them"),
        (["model.freeze=[backbone,rpn,heads]"], "model.freeze=['backbone', 'rpn', 'heads']: expected one of"),
        (["model=retinanet", "model.freeze=rpn"], "model.freeze=rpn: expected one of backbone, fpn or a list"),
        (["model.backbone=mobilenet_v3_fpn", "model.trainable_backbone_layers=7"],
         "model.trainable_backbone_layers=7: expected 0 to 6 for mobilenet_v3_fpn, or null"),
    ],
)
def test_start_keys_are_checked_before_anything_runs(overrides, message):
    from losslab.config.validation import validate
    from losslab.errors import LosslabError

    with pytest.raises(LosslabError, match=re.escape(message)):
        validate(compose_config(overrides))


def test_cli_missing_coco_weights_offline_is_one_clear_error_before_the_run_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    result = _train_cli("model.backbone=resnet50_fpn", "model.weights=coco", "model.download=false",
                        "run_dir=run", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    assert f"copy it to {expected}" in output and "model.download=false forbids downloading it" in output
    assert not (tmp_path / "run" / "split.json").exists()


def test_cli_unknown_backbone_lists_the_choices_without_traceback(tmp_path):
    result = _train_cli("model.backbone=vgg16", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert ("model.backbone=vgg16: expected resnet18_fpn or resnet50_fpn or mobilenet_v3_fpn for model=faster_rcnn"
            in output)
    assert "Traceback" not in output


def test_cli_user_error_at_run_time_is_one_clear_line(tmp_path):
    result = _train_cli("split.val=0.0", "split.train=0.75", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "split.val" in output and "empty" in output
    assert "Traceback" not in output


def test_help_lists_every_option_of_every_group(tmp_path):
    result = train("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    groups = {d.name: [p.stem for p in d.glob("*.yaml")] for d in config_dir().glob("*/") if d.name != "hydra"}
    groups |= {f"loss/{key}": list(options) for key, options in loss_options().items()}
    for group, options in groups.items():
        assert group in lines, group
        listed = set(re.findall(r"[\w/]+", lines[group]))
        assert set(options) <= listed, (group, set(options) - listed)
    assert "resume=outputs/DATE/TIME" in result.stdout and "install=bash" in result.stdout
    assert "loss/cls=custom loss.cls._target_=" in result.stdout and "--config-dir myconf" in result.stdout


@pytest.mark.parametrize("arch", ["faster_rcnn", "mask_rcnn", "retinanet", "fcos", "ssd", "ssdlite", "unet",
                                  "segformer"])
def test_model_defaults_read_from_the_files_are_the_composed_ones(arch):
    from omegaconf import OmegaConf

    from losslab.config.run_config import model_defaults

    task = ["task=segmentation"] if arch in ("unet", "segformer") else []
    assert model_defaults(arch) == OmegaConf.to_container(compose_config([*task, f"model={arch}"]).model)

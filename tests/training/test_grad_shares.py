"""trainer.grad_shares: each loss component's share of the gradient at the backbone's output, on a fixed probe
batch at the end of every epoch (train/grad_share/<component> in metrics.csv, summary.json and loss_curves.png)."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from conftest import tiny_config, tiny_segmentation_config
from losslab import run
from losslab.config.validation import validate
from losslab.errors import LosslabError
from losslab.losses.catalogue import ARCH_COMPONENTS
from losslab.reporting.curves import GRAD_SHARE, GRAD_SHARE_TITLE, loss_curves_figure
from losslab.reporting.history import read_metrics
from losslab.training.builders import build_data, build_model
from losslab.training.grad_shares import check_probed, component_grad_norms, draw_probe, share_columns, shares


class Features(nn.Module):
    """Two feature maps from the stacked images: `a` = x * w and `b` = 2 x * w."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return OrderedDict(a=x * self.weight, b=2 * x * self.weight)


class KnownGradients(nn.Module):
    """Classification 3 * sum(a): gradient 3 at every element of `a`, none at `b`. Box regression 0.5 * |b|^2:
    gradient `b` itself. Objectness reads no feature (a head parameter only): gradient 0."""

    def __init__(self):
        super().__init__()
        self.backbone = Features()
        self.head = nn.Parameter(torch.tensor(2.0))
        self.norm = nn.BatchNorm1d(1)  # held in eval mode by the probe, and put back in train mode after it

    def forward(self, images, targets):
        features = self.backbone(torch.stack(images))
        return {"loss_classifier": 3 * features["a"].sum(), "loss_box_reg": 0.5 * features["b"].square().sum(),
                "loss_objectness": self.head ** 2}


def test_a_hand_built_model_gives_the_exact_norms_and_shares_and_is_left_as_it_was():
    model = KnownGradients().train()
    images = [torch.full((1, 2, 2), 2.0)]  # a: four 2s, b: four 4s
    norms = component_grad_norms(model, images, [{}])
    # |3 * ones(4)| = 6; |b| = sqrt(4 * 16) = 8; the head parameter is no feature: 0.
    assert norms == pytest.approx({"classification": 6.0, "box_regression": 8.0, "objectness": 0.0}, abs=1e-12)
    assert shares(norms) == pytest.approx({"classification": 6 / 14, "box_regression": 8 / 14, "objectness": 0.0})
    assert all(parameter.grad is None for parameter in model.parameters())
    assert model.training and model.norm.training
    assert list(model.backbone._forward_hooks) == []  # the probe's hook is removed


def test_shares_of_zero_gradients_are_nan_not_a_division_error():
    assert all(math.isnan(share) for share in shares({"classification": 0.0, "box_regression": 0.0}).values())


def test_the_probe_batch_is_the_same_for_the_same_seed_and_leaves_the_random_stream_alone():
    dataset = [(torch.rand(3, 4, 4), {"boxes": torch.zeros(0, 4)}) for _ in range(6)]
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = draw_probe(dataset, 2, seed=1, device=torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
    second = draw_probe(dataset, 2, seed=1, device=torch.device("cpu"))
    assert len(first.images) == 2
    assert all(torch.equal(a, b) for a, b in zip(first.images, second.images, strict=True))


def test_a_model_without_a_backbone_is_refused_by_key():
    with pytest.raises(LosslabError, match=r"trainer.grad_shares=false"):
        check_probed(nn.Linear(2, 2))
    assert share_columns(KnownGradients(), None) == {}  # switched off: no columns


@pytest.mark.parametrize("arch", ["mask_rcnn", "retinanet"])
def test_every_component_of_each_detector_pushes_the_features(arch):
    plan = validate(tiny_config(f"model={arch}"))
    torch.manual_seed(0)
    data = build_data(plan)
    model = build_model(plan, num_classes=len(data.classes))
    probe = draw_probe(data.train, 2, seed=0, device=torch.device("cpu"))
    norms = component_grad_norms(model, probe.images, probe.targets, probe.seed)
    assert set(norms) == set(ARCH_COMPONENTS[arch])
    assert all(norm > 0 for norm in norms.values()), norms


@pytest.fixture(scope="module")
def detection_run(module_tmp_path):
    return run(tiny_config("trainer.max_epochs=2", "eval.every=0", run_dir=module_tmp_path / "detection"))


def test_a_run_writes_shares_in_0_1_summing_to_1_into_metrics_csv_and_summary_json(detection_run):
    rows = read_metrics(detection_run.run_dir / "metrics.csv")
    components = ("classification", "box_regression", "objectness", "rpn_box_regression")
    for row in rows:
        values = [row[f"{GRAD_SHARE}{name}"] for name in components]
        assert all(0.0 <= value <= 1.0 for value in values)
        assert sum(values) == pytest.approx(1.0, abs=1e-9)
        assert max(values) < 1.0  # every component of Faster R-CNN reads the features
    summary = json.loads((detection_run.run_dir / "summary.json").read_text())
    assert {key: summary["last"][key] for key in summary["last"] if key.startswith(GRAD_SHARE)} == \
        {key: value for key, value in rows[-1].items() if key.startswith(GRAD_SHARE)}
    assert detection_run.history[-1][f"{GRAD_SHARE}objectness"] == rows[-1][f"{GRAD_SHARE}objectness"]


def test_loss_curves_have_a_panel_holding_the_shares_only_where_the_columns_exist(detection_run):
    rows = read_metrics(detection_run.run_dir / "metrics.csv")
    figure = loss_curves_figure(rows)
    [panel] = [ax for ax in figure.axes if ax.get_title() == GRAD_SHARE_TITLE]
    drawn = {line.get_label(): list(line.get_ydata()) for line in panel.get_lines()}
    assert drawn == {name: [row[GRAD_SHARE + name] for row in rows]
                     for name in ("classification", "box_regression", "objectness", "rpn_box_regression")}
    without = [{key: value for key, value in row.items() if not key.startswith(GRAD_SHARE)} for row in rows]
    assert GRAD_SHARE_TITLE not in [ax.get_title() for ax in loss_curves_figure(without).axes]


def test_the_switch_turns_the_shares_off(tmp_path):
    result = run(tiny_config("trainer.grad_shares=false", "eval.every=0", run_dir=tmp_path / "off"))
    rows = read_metrics(result.run_dir / "metrics.csv")
    assert rows and not [key for row in rows for key in row if key.startswith(GRAD_SHARE)]


def test_segmentation_shares_of_pixel_and_aux(tmp_path):
    result = run(tiny_segmentation_config("model=deeplabv3", "eval.every=0",
                                          run_dir=tmp_path / "segmentation"))
    [row] = read_metrics(result.run_dir / "metrics.csv")
    pixel, aux = row[f"{GRAD_SHARE}pixel"], row[f"{GRAD_SHARE}aux"]
    assert 0.0 < pixel < 1.0 and 0.0 < aux < 1.0
    assert pixel + aux == pytest.approx(1.0, abs=1e-9)

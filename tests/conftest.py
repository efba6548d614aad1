"""Shared test helpers: tiny configs that train in seconds on two CPU cores."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import settings

from losslab import compose_config
from losslab.reporting.history import write_metrics

# The machines running the suite are shared: a property test's wall time says nothing about the code.
settings.register_profile("shared_machine", deadline=None)
settings.load_profile("shared_machine")

# 64 px images, 10 images (5 train / 3 val / 2 test), one epoch, no progress bars.
TINY = [
    "data.num_images=10",
    "data.image_size=64",
    "data.max_objects=2",
    "data.batch_size=2",
    "model.min_size=64",
    "model.max_size=64",
    "model.box_batch_size_per_image=32",
    "trainer.max_epochs=1",
    "trainer.progress=false",
    "trainer.device=cpu",
]


# task=segmentation's tiny run: the same data and trainer, the default segmenter (LR-ASPP) at 64 px.
TINY_SEGMENTATION = [
    "task=segmentation",
    *[override for override in TINY if not override.startswith("model.box_batch_size")],
]


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests are many small ops; more threads than cores only adds contention on CI's 2 cores.
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True, scope="session")
def _dataset_cache_of_the_session(tmp_path_factory):
    # data.cache is on by default: tests write their dataset indexes into a folder of their own, never the user's.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOSSLAB_CACHE", str(tmp_path_factory.mktemp("losslab_cache")))
        yield


@pytest.fixture(scope="module")
def module_tmp_path(tmp_path_factory, request):
    """A folder for a module's shared runs, removed when the module is done unless one of its tests failed.

    Each run keeps checkpoints of up to 200 MB: kept to the end, a suite's runs would fill a CI machine's disk.
    (pyproject.toml's tmp_path_retention_policy does the same for each test's own tmp_path.)"""
    failed_before = request.session.testsfailed
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield folder
    if request.session.testsfailed == failed_before:
        shutil.rmtree(folder, ignore_errors=True)


def tiny_config(*overrides: str, run_dir=None):
    extra = [f"run_dir={run_dir}"] if run_dir is not None else []
    return compose_config([*TINY, *overrides, *extra])


def counted_calls(monkeypatch, module, name: str) -> list:
    """The calls of `module.name` from now on (each call's arguments), the function still doing its work."""
    calls = []
    original = getattr(module, name)

    def counted(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(module, name, counted)
    return calls


def fake_run(path, overrides, rows, status="completed", loss=None, monitor="val/loss"):
    """A run folder as `train` leaves it, made up (no training): .hydra/overrides.yaml and config.yaml (retinanet,
    `loss` as the loss section), metrics.csv holding `rows` (none for a run that failed at once) and summary.json."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    config = {"model": {"arch": "retinanet", "backbone": "resnet18_fpn"},
              "loss": loss or {"cls": {"name": "default"}}, "trainer": {"monitor": monitor}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if rows:
        write_metrics(path / "metrics.csv", rows)
    best = min(rows, key=lambda r: r["val/loss"]) if rows else None
    (path / "summary.json").write_text(json.dumps({"status": status, "best": best, "epochs_run": len(rows)}))
    return path


# A user's own module (userloss.py in the working folder, not in the package): each function or class is written
# the way a user would write the built-in default it copies, against the contract of docs/losses.md.
USER_LOSSES = """
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss


def ce(logits, labels):
    \"\"\"R-CNN classification: cross-entropy averaged over the sampled RoIs.\"\"\"
    return F.cross_entropy(logits, labels)


def scaled_ce(logits, labels, *, scale):
    return scale * F.cross_entropy(logits, labels)


def sigmoid_focal(logits, labels, *, reduction, alpha=0.25, gamma=2.0):
    \"\"\"RetinaNet classification: a sigmoid focal loss per class, background (label 0) a negative everywhere.\"\"\"
    targets = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    targets[:, 0] = 0
    per_anchor = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none").sum(dim=1)
    return per_anchor.sum() if reduction == "sum" else per_anchor.mean()


def sigmoid_focal_mean(logits, labels):
    \"\"\"The same without `reduction`: the mean over the anchors, which losslab turns into RetinaNet's sum.\"\"\"
    return sigmoid_focal(logits, labels, reduction="mean")


def smooth_l1(pred_deltas, target_deltas, anchors, box_coder, beta=1 / 9):
    return F.smooth_l1_loss(pred_deltas, target_deltas, beta=beta, reduction="sum")


def decoded_l1(pred_deltas, target_deltas, anchors, box_coder):
    \"\"\"L1 on the deltas, by way of the boxes they decode to: RetinaNet's box coder has weights 1, so
    the width and height terms are log-ratios of the decoded sizes.\"\"\"
    pred = box_coder.decode_single(pred_deltas, anchors)
    target = box_coder.decode_single(target_deltas, anchors)
    centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
    size = lambda b: b[:, 2:] - b[:, :2]  # noqa: E731
    anchor_size = size(anchors)
    return ((centre(pred) - centre(target)) / anchor_size).abs().sum() + (size(pred) / size(target)).log().abs().sum()


def objectness_bce(logits, labels):
    return F.binary_cross_entropy_with_logits(logits, labels)


class MaskBCE(torch.nn.Module):
    \"\"\"Mask R-CNN's mask loss as a module whose instance is called: the mean per-pixel BCE.\"\"\"

    def __init__(self, weight=1.0):
        super().__init__()
        self.register_buffer("weight", torch.tensor(weight))

    def forward(self, mask_logits, targets):
        return self.weight * F.binary_cross_entropy_with_logits(mask_logits, targets)


def pixel_ce(logits, target, label_smoothing=0.0):  # task=segmentation: the mean over the counted pixels
    return F.cross_entropy(logits, target, ignore_index=255, label_smoothing=label_smoothing)


def pixel_sum(logits, target):
    return F.cross_entropy(logits, target, ignore_index=255, reduction="none").sum(dim=0)
"""


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """An empty working folder holding userloss.py (USER_LOSSES), as a user's would. sys.path and the modules
    imported from the folder are put back afterwards."""
    (tmp_path / "userloss.py").write_text(USER_LOSSES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    for name, module in list(sys.modules.items()):
        if Path(getattr(module, "__file__", None) or "/").is_relative_to(tmp_path):
            del sys.modules[name]


def tiny_segmentation_config(*overrides: str, run_dir=None):
    extra = [f"run_dir={run_dir}"] if run_dir is not None else []
    return compose_config([*TINY_SEGMENTATION, *overrides, *extra])

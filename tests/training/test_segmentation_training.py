"""task=segmentation end to end on the built-in shapes: the defaults it switches, a run's files and columns, loss
phases, resume, and evaluate / predict / export on the run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import TINY_SEGMENTATION, tiny_segmentation_config
from losslab import compose_config, run
from losslab.commands.evaluate import evaluate_run
from losslab.commands.export import export_run
from losslab.commands.predict import predict_images
from losslab.config.validation import validate
from losslab.errors import LosslabError
from losslab.reporting.history import read_metrics


def test_task_segmentation_switches_model_and_loss_defaults_and_keeps_detection_as_it_was():
    cfg = compose_config(["task=segmentation"])
    assert (cfg.task, cfg.model.arch, cfg.data.name) == ("segmentation", "lraspp", "shapes")
    assert OmegaConf.to_container(cfg.loss) == {"pixel": {"name": "default"}, "weights": {"pixel": 1.0, "aux": 0.5},
                                                "balance": "none", "schedule": {"phases": [], "cycle": False}}
    assert compose_config(["task=segmentation", "loss=dice"]).loss.pixel.name == "dice"
    assert compose_config(["loss=dice"]).loss.mask.name == "dice"  # detection: Mask R-CNN's mask loss
    detection = compose_config([])
    assert detection.task == "detection" and "pixel" not in detection.loss
    for preset in ("ce", "weighted_ce", "focal", "dice", "jaccard", "ce_iou", "tversky", "lovasz",
                   "cycle_wce_jaccard"):
        validate(compose_config(["task=segmentation", f"loss={preset}", "model=deeplabv3"]))


@pytest.mark.parametrize(("overrides", "message"), [
    (["model=deeplabv3"], "model=deeplabv3 is a semantic segmentation model; add task=segmentation"),
    (["task=segmentation", "model=retinanet"], "model=retinanet is a detector"),
    (["task=segmentation", "data=voc", "data.root=x"], "use data=voc_seg|data=voc_seg"),
    (["task=segmentation", "trainer.monitor=val/mAP"], "trainer.monitor=val/mAP: expected auto or one of"),
    (["task=segmentation", "augment.copy_paste.p=0.5"], "augment.copy_paste.p=0.5: copy_paste pastes object "
                                                         "instances"),
    (["task=segmentation", "model=fcn", "model.backbone=mobilenet_v3_large"], "model=fcn has the backbones"),
])
def test_configs_mixing_the_tasks_are_refused_clearly(overrides, message):
    with pytest.raises(LosslabError, match=message):
        validate(compose_config(overrides))


@pytest.fixture(scope="module")
def trained(module_tmp_path):
    """A 2-epoch run of the cycling recipe with metrics every epoch, on tiny shapes."""
    run_dir = module_tmp_path / "run"
    cfg = tiny_segmentation_config("trainer.max_epochs=2", "eval.every=1", "loss=cycle_wce_jaccard",
                                   "loss.schedule.phases.0.epochs=1", "model=deeplabv3", "trainer.checkpoints=both",
                                   "trainer.keep_resume_state=true", run_dir=run_dir)
    return run(cfg)


def test_a_run_logs_every_component_the_reference_loss_and_the_metrics(trained):
    assert trained.status == "completed"
    rows = trained.history
    assert [row["phase"] for row in rows] == [1, 2]
    for row in rows:
        assert row["train/loss"] == pytest.approx(row["train/pixel"] + row["train/aux"])
        assert 0 <= row["val/mIoU"] <= 1 and 0 <= row["val/pixel_accuracy"] <= 1
        assert {"val/ref_loss", "val/IoU/background", "val/IoU/triangle", "val/mDice"} <= set(row)
        assert row["val/ref_loss"] == row["val/ref_pixel"]  # plain cross-entropy of the main output only
    header = (trained.run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == ["epoch", "phase", "lr", "train/loss", "train/pixel", "train/aux", "val/loss"]
    summary = json.loads((trained.run_dir / "summary.json").read_text())
    assert summary["classes"] == ["background", "circle", "square", "triangle"]
    assert summary["best_mIoU"] == max(row["val/mIoU"] for row in rows)
    assert (trained.run_dir / "loss_curves.png").is_file()


def test_a_segmentation_run_resumes_in_its_folder(trained):
    resumed = run(tiny_segmentation_config(f"resume={trained.run_dir}"),
                  overrides=[f"resume={trained.run_dir}", "trainer.max_epochs=3"])
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3] and resumed.history[2]["phase"] == 1
    assert resumed.history[:2] == trained.history


def test_evaluate_writes_the_metrics_the_iou_chart_and_the_pixel_confusion_matrix(trained):
    metrics = evaluate_run(trained.run_dir, split="val", checkpoint="last", device="cpu", progress=False)
    out = trained.run_dir / "eval_val"
    saved = json.loads((out / "metrics.json").read_text())
    matrix = np.array(saved["confusion_matrix"])
    assert matrix.shape == (4, 4) and matrix.sum() == 3 * 64 * 64 and saved["images"] == 3  # val: 3, no pixel ignored
    assert saved["pixel_accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert metrics["mIoU"] == saved["mIoU"] and (out / "class_iou.png").is_file()
    assert (out / "confusion_matrix.png").is_file()


def test_predict_draws_each_mask_with_a_legend_and_writes_it_as_an_index_png(trained, tmp_path):
    Image.fromarray(np.full((40, 70, 3), 90, dtype=np.uint8)).save(tmp_path / "photo.jpg")
    result = predict_images(trained.run_dir, [tmp_path / "photo.jpg"], out=tmp_path / "out", device="cpu",
                            progress=False)
    assert (result.predicted, result.detections, result.counted) == (1, 1, "masks")
    index_png = Image.open(tmp_path / "out" / "masks" / "photo.png")
    assert index_png.mode == "P" and index_png.size == (70, 40)
    assert set(np.unique(np.array(index_png)).tolist()) <= {0, 1, 2, 3}
    drawn = Image.open(tmp_path / "out" / "photo.png")
    assert drawn.size[0] == 70 and drawn.size[1] > 40  # the legend below the image
    record = json.loads((tmp_path / "out" / "predictions.json").read_text())[0]
    assert record["mask_file"] == "masks/photo.png" and sum(record["classes"].values()) == pytest.approx(1)


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_export_is_checked_on_images_of_three_shapes(trained, tmp_path, format):
    result = export_run(trained.run_dir, format=format, checkpoint="last", out=tmp_path)
    assert result.differences.pixels == 64 * 64 + 2 * 64 * 96
    assert result.differences.probability <= 1e-4
    metadata = json.loads(result.metadata_file.read_text())
    assert metadata["task"] == "segmentation" and metadata["outputs"] == ["mask", "probabilities"]
    if format == "torchscript":
        scripted = torch.jit.load(str(result.model_file))
        assert scripted([torch.rand(3, 30, 50)])[0]["mask"].shape == (30, 50)


def test_two_gloo_processes_average_like_one_process(tmp_path):
    # As tests/training/test_distributed.py for detection: batch size 1 keeps each image's loss and BatchNorm
    # statistics its own, a vanishing learning rate keeps the weights, so both runs average the same numbers;
    # the metrics come from the confusion matrices of both processes' shares, summed.
    same = ["data.num_images=12", "data.batch_size=1", "optimizer=sgd", "optimizer.lr=1e-12", "scheduler=none",
            "augment=none", "eval.every=1"]  # 12 images: a train split both processes share evenly
    single = run(tiny_segmentation_config(*same, run_dir=tmp_path / "single")).history[0]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "losslab",
               *TINY_SEGMENTATION, *same, f"run_dir={tmp_path / 'ddp'}"]
    scratch = tmp_path.parent / f"{tmp_path.name}-tmp"  # the processes' temporary directory
    scratch.mkdir()
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=280,
                               env={**os.environ, "TMPDIR": str(scratch)})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (ddp,) = read_metrics(tmp_path / "ddp" / "metrics.csv")
    assert ddp["train/loss"] == pytest.approx(single["train/loss"], rel=1e-6)
    assert ddp["train/pixel"] == pytest.approx(single["train/pixel"], rel=1e-6)
    # Validation runs BatchNorm on running statistics of rank 0's share of the training images only: the losses
    # match closely, but the classes of the random start's nearly tied logits do not, so the metrics are only
    # checked to be there.
    for key in ("val/loss", "val/pixel", "val/ref_loss"):
        assert ddp[key] == pytest.approx(single[key], rel=1e-3, abs=1e-3), key
    assert all(0 <= ddp[key] <= 1 for key in ("val/mIoU", "val/pixel_accuracy", "val/IoU/background"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]  # only the main process wrote


def test_augment_strong_trains_task_segmentation_with_its_mosaic(tmp_path):
    result = run(tiny_segmentation_config("augment=strong", "augment.mosaic.p=1.0", "trainer.max_epochs=1",
                                          "eval.every=0", run_dir=tmp_path / "run"))
    (row,) = result.history
    assert result.status == "completed" and math.isfinite(row["train/loss"]) and row["train/loss"] > 0

"""run(cfg) end to end on tiny data: the run folder, its numbers, checkpoints and failure states."""

from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import tiny_config
from losslab import build_dataloaders, build_model, compose_config, run, validation_loss
from losslab.errors import LosslabError
from losslab.modeling.weights import read_checkpoint
from losslab.reporting.diagnosis import diagnose
from losslab.reporting.history import read_metrics
from losslab.training.optim import build_schedulers


@pytest.fixture(scope="module")
def finished(module_tmp_path):
    run_dir = module_tmp_path
    cfg = tiny_config("trainer.max_epochs=2", "optimizer.lr=0.001", "scheduler=step", "scheduler.step_size=1",
                      "scheduler.gamma=0.5", "scheduler.warmup_epochs=0.5", run_dir=run_dir)
    return cfg, run(cfg)


def test_run_folder_holds_every_documented_file(finished):
    _, result = finished
    names = {p.relative_to(result.run_dir).as_posix() for p in result.run_dir.rglob("*") if p.is_file()}
    # By default a finished run keeps best.pt only: its last.pt (the resume state) goes when it ends.
    assert names == {".hydra/config.yaml", "metrics.csv", "loss_curves.png", "summary.json", "split.json",
                     "data_audit.json", "data_audit.png", "checkpoints/best.pt"}


def test_metrics_csv_is_the_returned_history(finished):
    _, result = finished
    rows = read_metrics(result.run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert list(rows[0])[:3] == ["epoch", "lr", "train/loss"] and list(rows[0])[-1] == "time_s"
    for saved, returned in zip(rows, result.history, strict=True):
        assert saved.keys() == returned.keys()
        assert all(saved[k] == pytest.approx(returned[k], rel=1e-12) for k in saved)
    for split in ("train", "val"):
        total = rows[0][f"{split}/loss"]
        parts = sum(rows[0][f"{split}/{c}"] for c in ("classification", "box_regression", "objectness",
                                                       "rpn_box_regression"))
        assert total == pytest.approx(parts, rel=1e-6)
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 5e-4])  # step decay after epoch 1, warmup done


def test_summary_names_the_best_epoch_and_a_diagnosis(finished):
    _, result = finished
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["status"] == result.status == "completed"
    assert summary["epochs_run"] == 2
    # The default selection metric: val/mAP, evaluated every epoch; the earliest of equal values.
    assert (summary["monitor"], result.history[0].keys() >= {"val/mAP"}) == ("val/mAP", True)
    best = max(result.history, key=lambda r: (r["val/mAP"], -r["epoch"]))
    assert summary["best_epoch"] == best["epoch"]
    assert summary["best"]["val/loss"] == pytest.approx(best["val/loss"])
    assert summary["measured_on"]["val_images"] == 3  # TINY: 10 images, 5 train / 3 val / 2 test
    # The curves it reports, read by the documented rules (3 val images: too few to judge them).
    assert summary["diagnosis"] == diagnose(result.history, val_images=3,
                                            trains_batch_norm=summary["start"]["batch_norm_layers"] > 0)
    assert summary["diagnosis"]["state"] == "too few images"
    assert summary["classes"] == ["circle", "square", "triangle"]
    assert {"python", "torch", "torchvision", "losslab"} <= set(summary["versions"])


def test_split_json_lists_disjoint_ids_of_the_whole_dataset(finished):
    _, result = finished
    split = json.loads((result.run_dir / "split.json").read_text())
    ids = split["train"] + split["val"] + split["test"]
    assert sorted(ids) == list(range(10)) and len(set(ids)) == 10
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (5, 3, 2)  # 0.5/0.25/0.25, largest remainder


def test_best_checkpoint_reproduces_the_logged_validation_loss(finished):
    cfg, result = finished
    state = read_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    assert state["epoch"] == result.summary["best_epoch"]
    assert set(state) == {"model", "epoch", "config", "classes", "category_ids", "metrics"}  # weights, no optimizer
    assert state["metrics"] == pytest.approx(result.summary["best"])
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    losses = validation_loss(model, build_dataloaders(cfg)["val"], seed=cfg.trainer.seed)
    logged = result.summary["best"]
    assert losses["loss"] == pytest.approx(logged["val/loss"], rel=1e-5)
    assert losses["classification"] == pytest.approx(logged["val/classification"], rel=1e-5)


def test_a_second_run_never_overwrites_a_finished_folder(finished):
    cfg, result = finished
    before = (result.run_dir / "metrics.csv").read_bytes()
    with pytest.raises(LosslabError, match="already holds a run"):
        run(cfg)
    assert (result.run_dir / "metrics.csv").read_bytes() == before


@pytest.mark.parametrize(("arch", "component", "absent"), [("mask_rcnn", "mask", None),
                                                           ("retinanet", "classification", "objectness")])
def test_other_architectures_log_their_components(tmp_path, arch, component, absent):
    result = run(tiny_config(f"model={arch}", "trainer.checkpoints=false", run_dir=tmp_path))
    row = result.history[0]
    assert result.status == "completed"
    assert math.isfinite(row[f"val/{component}"]) and math.isfinite(row[f"train/{component}"])
    if absent:
        assert f"val/{absent}" not in row
    assert not (tmp_path / "checkpoints").exists()


def test_divergence_stops_the_run_and_keeps_what_was_written(tmp_path):
    # A weight of 1e39 overflows float32: the total loss is infinite at the first step.
    result = run(tiny_config("loss.weights.classification=1e39", run_dir=tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result.status == summary["status"] == "diverged"
    assert "epoch 1, train step 0" in summary["error"] and "classification" in summary["error"]
    assert summary["epochs_run"] == 0
    assert (tmp_path / "split.json").exists()


def test_divergence_in_the_validation_pass_is_named_so(tmp_path, monkeypatch):
    from losslab.training import epoch

    def nan_classification(*args, **kwargs):
        losses = validation_loss(*args, **kwargs)
        return {**losses, "classification": math.nan, "loss": math.nan}

    monkeypatch.setattr(epoch, "validation_loss", nan_classification)  # every train loss stays finite
    result = run(tiny_config("model=retinanet", run_dir=tmp_path))
    assert result.status == "diverged"
    assert result.summary["error"].startswith("non-finite loss at epoch 1, the validation pass: classification (")
    assert math.isfinite(result.history[0]["train/loss"])
    assert [row["epoch"] for row in read_metrics(tmp_path / "metrics.csv")] == [1]  # logged, never checkpointed
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.monitor=val/mAPP"], "trainer.monitor=val/mAPP: expected auto or one of lr, train/loss"),
        (["model=retinanet", "trainer.monitor=val/mask"],
         "expected auto or one of lr, train/loss, train/classification"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0: expected at least 1"),
        (["optimizer.lr=0"], "optimizer.lr=0.0: expected a positive learning rate"),
        (["optimizer.lr=-1", "data.batch_size=0"], "optimizer.lr=-1.0.*; data.batch_size=0"),
        (["loss.weights.box_regression=-2"], "loss.weights.box_regression=-2.0: expected >= 0"),
        (["data.num_images=0"], "data.num_images >= 1"),
        (["split.train=0.9"], "must be non-negative and sum to at most 1 \\(they sum to 1.4\\)"),
        (["trainer.early_stopping.patience=-1"], "trainer.early_stopping.patience=-1: expected 0 or more"),
        (["model.backbone=vgg16"], "model.backbone=vgg16: expected resnet18_fpn or resnet50_fpn"),
        (["logger.backends=[wandb]"], "logger.backends has \\['wandb'\\]: expected names among tensorboard, mlflow"),
        (["eval.backend=cocoapi"], "eval.backend=cocoapi: expected one of pycocotools, faster_coco_eval"),
    ],
)
def test_bad_configuration_is_refused_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(LosslabError, match=message):
        run(tiny_config(*overrides, run_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_training_is_repeatable_with_the_same_seed(tmp_path):
    first = run(tiny_config("model=retinanet", "trainer.checkpoints=false", run_dir=tmp_path / "a"))
    second = run(tiny_config("model=retinanet", "trainer.checkpoints=false", run_dir=tmp_path / "b"))
    strip = [{k: v for k, v in row.items() if k != "time_s"} for row in first.history]
    assert strip == [{k: v for k, v in row.items() if k != "time_s"} for row in second.history]


def test_warmup_ramps_per_step_then_the_epoch_schedule_takes_over():
    cfg = compose_config(["scheduler=cosine", "scheduler.warmup_epochs=0.5", "scheduler.warmup_factor=0.1",
                          "trainer.max_epochs=4"])
    assert cfg.scheduler.T_max == 4  # follows trainer.max_epochs
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedulers = build_schedulers(OmegaConf.to_container(cfg.scheduler, resolve=True), optimizer,
                                  steps_per_epoch=8)  # 4 warmup steps
    ramp = []
    for _ in range(6):
        ramp.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedulers.step()
    assert ramp == pytest.approx([0.1, 0.325, 0.55, 0.775, 1.0, 1.0])
    epochs = []
    for _ in range(4):
        schedulers.end_epoch(monitored=1.0)
        epochs.append(optimizer.param_groups[0]["lr"])
    assert epochs == pytest.approx([(1 + math.cos(math.pi * e / 4)) / 2 for e in range(1, 5)], abs=1e-9)


def test_default_run_logs_its_own_loss_as_the_reference(finished):
    _, result = finished
    assert all(row["val/ref_loss"] == row["val/loss"] for row in result.history)
    assert "phase" not in result.history[0]


def test_loss_schedule_switches_losses_and_lr_and_logs_phase_and_reference(tmp_path):
    cfg = tiny_config("model=mask_rcnn", "loss=cycle_wce_jaccard", "trainer.max_epochs=3", "scheduler=none",
                      "scheduler.warmup_epochs=0", "optimizer.lr=0.001", "trainer.checkpoints=false",
                      run_dir=tmp_path)
    result = run(cfg)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["phase"] for r in rows] == [1, 1, 2]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-3, 1e-4])
    # Trained with weighted CE and Jaccard, scored also with loss=default: the two differ.
    assert all(r["val/ref_loss"] != r["val/loss"] for r in rows)
    assert {"val/ref_classification", "val/ref_mask"} <= set(rows[0])
    assert list(rows[0])[:3] == ["epoch", "phase", "lr"]
    assert result.summary["class_weights"][0] == 1.0 and len(result.summary["class_weights"]) == 4


def test_a_loss_the_architecture_cannot_use_fails_before_training(tmp_path):
    with pytest.raises(LosslabError, match="loss.mask=jaccard: faster_rcnn has no mask component"):
        run(tiny_config("loss=cycle_wce_jaccard", run_dir=tmp_path))
    assert not (tmp_path / "metrics.csv").exists()


def test_detection_metrics_are_logged_every_epoch_and_can_pick_the_best(tmp_path):
    # eval.every=2 as by default: monitoring val/mAP evaluates every epoch anyway (the README's command).
    result = run(tiny_config("model=retinanet", "trainer.max_epochs=2", "eval.every=2", "trainer.monitor=val/mAP",
                             "trainer.mode=max", "trainer.checkpoints=false", run_dir=tmp_path))
    rows = read_metrics(tmp_path / "metrics.csv")
    for column in ("val/mAP", "val/mAP50", "val/mAP75", "val/mAR100", "val/AP/circle", "val/precision",
                   "val/recall", "val/F1"):
        assert all(0.0 <= row[column] <= 1.0 for row in rows), column
    best = max(rows, key=lambda r: r["val/mAP"])
    assert result.summary["best_epoch"] == best["epoch"] and result.summary["monitor"] == "val/mAP"
    assert result.summary["best_mAP"] == best["val/mAP"]


def test_evaluation_can_be_off_and_monitoring_map_turns_it_on_every_epoch(tmp_path):
    from losslab.config.validation import validate

    result = run(tiny_config("model=retinanet", "eval.every=0", "trainer.checkpoints=false", run_dir=tmp_path / "a"))
    assert not any(key.startswith("val/mAP") for key in result.history[0])
    for every in ("0", "2"):
        cfg = tiny_config(f"eval.every={every}", "trainer.monitor=val/mAP", "trainer.mode=max")
        assert validate(cfg).eval_every == 1
        stopping = tiny_config(f"eval.every={every}", "trainer.early_stopping.enabled=true",
                               "trainer.early_stopping.monitor=val/F1", "trainer.early_stopping.mode=max")
        assert validate(stopping).eval_every == 1
    assert validate(tiny_config("eval.every=3", "trainer.monitor=val/ref_loss")).eval_every == 3
    with pytest.raises(LosslabError, match="trainer.monitor=val/mAPP: expected auto or one of .*val/mAP"):
        validate(tiny_config("trainer.monitor=val/mAPP"))

"""smp's architectures end to end on the built-in shapes, as the torchvision segmenters run: `train task=segmentation
model=unet model.encoder=resnet34 loss=dice`, its resume, evaluate, predict and export (TorchScript and ONNX, checked),
and the refusal where TorchScript cannot compile the library's code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_SEGMENTATION, tiny_segmentation_config
from losslab import build_model, compose_config, run
from losslab.commands.evaluate import evaluate_run
from losslab.commands.export import export_run
from losslab.commands.predict import predict_images
from losslab.errors import LosslabError
from losslab.evaluation import exporting

CLASSES = ["background", "circle", "square", "triangle"]


@pytest.fixture(scope="module")
def unet(module_tmp_path):
    """`train task=segmentation model=unet model.encoder=resnet34 loss=dice`, one short epoch on tiny shapes."""
    cfg = tiny_segmentation_config("model=unet", "model.encoder=resnet34", "loss=dice", "eval.every=1",
                                   "trainer.checkpoints=both", "trainer.keep_resume_state=true",
                                   run_dir=module_tmp_path / "unet")
    return run(cfg)


def test_unet_on_resnet34_with_dice_trains_an_epoch_and_logs_its_one_component(unet):
    assert unet.status == "completed"
    (row,) = unet.history
    assert row["train/loss"] == row["train/pixel"] and "train/aux" not in row  # smp's models have no aux head
    assert row["val/ref_loss"] != row["val/pixel"]  # dice trains; the reference is cross-entropy
    assert 0 <= row["val/mIoU"] <= 1 and np.isfinite(row["val/loss"])
    summary = json.loads((unet.run_dir / "summary.json").read_text())
    assert summary["classes"] == CLASSES and summary["status"] == "completed"
    stored = (unet.run_dir / ".hydra" / "config.yaml").read_text()
    assert "arch: unet" in stored and "encoder: resnet34" in stored


def test_an_smp_run_resumes_in_its_folder(unet):
    resumed = run(tiny_segmentation_config(f"resume={unet.run_dir}"),
                  overrides=[f"resume={unet.run_dir}", "trainer.max_epochs=2"])
    assert [row["epoch"] for row in resumed.history] == [1, 2] and resumed.history[:1] == unet.history


def test_evaluate_and_predict_work_on_an_smp_run(unet, tmp_path):
    metrics = evaluate_run(unet.run_dir, split="val", checkpoint="last", device="cpu", progress=False)
    saved = json.loads((unet.run_dir / "eval_val" / "metrics.json").read_text())
    assert np.array(saved["confusion_matrix"]).sum() == 3 * 64 * 64 and metrics["mIoU"] == saved["mIoU"]
    Image.fromarray(np.full((40, 70, 3), 90, dtype=np.uint8)).save(tmp_path / "photo.jpg")
    result = predict_images(unet.run_dir, [tmp_path / "photo.jpg"], out=tmp_path / "out", device="cpu",
                            progress=False)
    assert (result.predicted, result.counted) == (1, "masks")
    assert Image.open(tmp_path / "out" / "masks" / "photo.png").size == (70, 40)


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_an_smp_unet_exports_checked_on_images_of_three_shapes(unet, tmp_path, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")
    result = export_run(unet.run_dir, format=format, checkpoint="last", out=tmp_path)
    assert result.differences.pixels == 64 * 64 + 2 * 64 * 96 and result.differences.probability <= 1e-4
    metadata = json.loads(result.metadata_file.read_text())
    assert (metadata["arch"], metadata["backbone"], metadata["classes"]) == ("unet", "resnet34", CLASSES)
    if format == "torchscript":
        assert torch.jit.load(str(result.model_file))([torch.rand(3, 30, 50)])[0]["mask"].shape == (30, 50)


def smp_exportable(arch: str) -> exporting.Exportable:
    torch.manual_seed(0)
    segmenter = build_model(compose_config([*TINY_SEGMENTATION, f"model={arch}"]), num_classes=len(CLASSES))
    return exporting.segmentation_export(segmenter.eval(), CLASSES, 1e-4)


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_another_smp_architecture_exports_faithfully(tmp_path, format):
    if format == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")
    exportable = smp_exportable("fpn")
    exported = exporting.save(exportable, format, tmp_path / "model")
    agreement = exportable.check([exported(image) for image in exportable.samples])
    assert agreement.pixels_differing == 0 and agreement.probability <= 1e-4


def test_unetplusplus_is_refused_by_torchscript_naming_the_library_code_and_exports_to_onnx(tmp_path):
    exportable = smp_exportable("unetplusplus")
    with pytest.raises(LosslabError, match=r"--format torchscript: TorchScript cannot compile this model's network "
                                           r"\(Unable to extract string literal index.*unetplusplus/decoder.py.*"
                                           r"export it with --format onnx"):
        exporting.save(exportable, "torchscript", tmp_path / "model.pt")
    assert not (tmp_path / "model.pt").exists()
    pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")
    exported = exporting.save(exportable, "onnx", tmp_path / "model.onnx")
    assert exportable.check([exported(image) for image in exportable.samples]).pixels_differing == 0


def test_pspnet_is_refused_by_onnx_naming_the_operation_and_exports_to_torchscript(tmp_path):
    pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")
    exportable = smp_exportable("pspnet")
    with pytest.raises(LosslabError, match=r"--format onnx: the ONNX exporter cannot export this model's network "
                                           r"for images of any size \(.*adaptive_avg_pool2d.*\); export it with "
                                           r"--format torchscript"):
        exporting.save(exportable, "onnx", tmp_path / "model.onnx")
    exported = exporting.save(exportable, "torchscript", tmp_path / "model.pt")
    assert exportable.check([exported(image) for image in exportable.samples]).pixels_differing == 0

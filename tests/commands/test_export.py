"""`losslab export RUN_DIR --format torchscript|onnx`: files that reproduce the PyTorch model without losslab,
model.json, a check that refuses an unfaithful export, and clear errors."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torchvision  # noqa: F401  (registers the detection ops a TorchScript detector calls)
from test_predict import CLASSES, untrained_run

from losslab.cli import main as losslab_main
from losslab.commands import export
from losslab.commands.export import export_run
from losslab.errors import LosslabError
from losslab.evaluation.saved_model import load_saved_model

# An image of another shape than the export's own samples (64 x 64 and 64 x 96).
IMAGE = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(7))


def reference(run_dir) -> dict:
    """The PyTorch model's detections of IMAGE, without a score cut (as exported)."""
    model = load_saved_model(run_dir, device="cpu").model
    export.set_score_threshold(model, 0.0)
    with torch.inference_mode():
        return model([IMAGE])[0]


def assert_same_detections(expected: dict, actual: dict) -> None:
    """Every expected detection has an actual one of the same label, box within 0.01 px and score within 1e-4.
    (Not position by position: detections with nearly equal scores may come out in either order.)"""
    assert len(expected["boxes"]) == len(actual["boxes"]) > 0
    same_label = expected["labels"][:, None] == actual["labels"][None].long()
    close_box = torch.isclose(expected["boxes"][:, None], actual["boxes"][None], atol=1e-2, rtol=0).all(-1)
    close_score = torch.isclose(expected["scores"][:, None], actual["scores"][None], atol=1e-4, rtol=0)
    assert (same_label & close_box & close_score).any(1).all()


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_torchscript_export_reproduces_the_model_with_torch_alone(arch, tmp_path, capsys):
    run_dir = untrained_run(tmp_path / "run", f"model={arch}")
    assert losslab_main(["export", str(run_dir), "--tolerance", "0.05"]) == 0
    printed = capsys.readouterr().out
    out = run_dir / "export"
    assert str(out / "model.pt") in printed and "checked against the PyTorch model" in printed
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.pt"]

    meta = json.loads((out / "model.json").read_text())
    assert meta["format"] == "torchscript" and meta["arch"] == arch and meta["variant"] == "v1"
    assert meta["classes"] == ["__background__", *CLASSES]
    assert meta["input"]["min_size"] == meta["input"]["max_size"] == 64
    assert meta["input"]["image_mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["input"]["image_std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["score_threshold"] == 0.5 and meta["max_detections"] == (300 if arch == "retinanet" else 100)
    assert meta["verification"]["detections_compared"] > 0 and meta["verification"]["box_tolerance_px"] == 0.05

    model = torch.jit.load(str(out / "model.pt"))  # what a program without losslab does
    _, detections = model([IMAGE])
    assert_same_detections(reference(run_dir), detections[0])


def test_onnx_export_reproduces_the_model_with_onnxruntime(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")
    run_dir = untrained_run(tmp_path / "run", "model=faster_rcnn")
    result = export_run(run_dir, "onnx", out=tmp_path / "onnx")
    assert result.model_file == tmp_path / "onnx" / "model.onnx" and result.differences.detections > 0
    assert result.differences.box <= export.BOX_TOLERANCE and result.differences.score <= export.SCORE_TOLERANCE
    meta = json.loads(result.metadata_file.read_text())
    assert meta["format"] == "onnx" and meta["outputs"] == ["boxes", "labels", "scores"]

    session = onnxruntime.InferenceSession(str(result.model_file), providers=["CPUExecutionProvider"])
    outputs = dict(zip(meta["outputs"], session.run(None, {"image": IMAGE.numpy()}), strict=True))
    detections = {name: torch.from_numpy(value) for name, value in outputs.items()}
    assert_same_detections(reference(run_dir), detections)


def test_an_unfaithful_export_is_refused_and_not_kept(tmp_path, monkeypatch):
    run_dir = untrained_run(tmp_path / "run", "model=retinanet")

    def shifted_export(model, path):
        """Writes a file that predicts like the model, but with every box 1 px to the right."""
        path.write_bytes(b"a model")

        def predict(image):
            with torch.inference_mode():
                detections = model([image])[0]
            return {**detections, "boxes": detections["boxes"] + torch.tensor([1.0, 0.0, 1.0, 0.0])}
        return predict

    monkeypatch.setattr(export, "save_torchscript", shifted_export)
    with pytest.raises(LosslabError, match=r"boxes by up to 1 px \(tolerance 0.01\), scores by up to 0 "):
        export_run(run_dir)
    assert not any((run_dir / "export").iterdir())


def test_export_explains_bad_requests(tmp_path, capsys, monkeypatch):
    assert losslab_main(["export", str(tmp_path / "nowhere")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("losslab export: error: ") and "nowhere" in error and "run folder" in error

    run_dir = untrained_run(tmp_path / "run")
    assert losslab_main(["export", str(run_dir), "--format", "tflite"]) == 1
    assert "--format tflite: expected one of torchscript, onnx" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(LosslabError, match=r"pip install 'losslab\[export\]'"):
        export_run(run_dir, "onnx")

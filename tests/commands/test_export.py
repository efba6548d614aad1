"""`losslab export RUN_DIR --format torchscript|onnx`: files that reproduce the PyTorch model without losslab on
photos of any size, one metadata file per format, a check of what a user keeps that refuses an unfaithful export
and leaves nothing behind, and clear errors."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torchvision  # noqa: F401  (registers the detection ops a TorchScript detector calls)
from test_predict import CLASSES, untrained_run

from conftest import TINY_SEGMENTATION
from losslab import build_model, compose_config
from losslab.cli import main as losslab_main
from losslab.commands.export import export_run
from losslab.commands.saved_model import load_saved_model
from losslab.errors import LosslabError
from losslab.evaluation import export_check, exporting
from losslab.modeling.heads import set_score_threshold
from losslab.modeling.resize import rounds_apart, sizes_rounding_apart

# A photo the 64 px test models shrink, to a size (48 x 64) that torchvision's scripted resize misses (47 x 63).
IMAGE = torch.rand(3, 600, 800, generator=torch.Generator().manual_seed(7))


def reference(run_dir) -> dict:
    """The PyTorch model's detections of IMAGE, without a score cut (as exported)."""
    model = load_saved_model(run_dir, device="cpu").model
    set_score_threshold(model, 0.0)
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
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "model.pt.json"]

    meta = json.loads((out / "model.pt.json").read_text())
    assert meta["format"] == "torchscript" and meta["arch"] == arch and meta["variant"] == "v1"
    assert meta["classes"] == ["__background__", *CLASSES]
    assert meta["input"]["min_size"] == meta["input"]["max_size"] == 64
    assert meta["input"]["image_mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["input"]["image_std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["score_threshold"] == 0.5 and meta["max_detections"] == (300 if arch == "retinanet" else 100)
    check = meta["verification"]
    swept = sizes_rounding_apart(64, 64, export_check.SWEPT_SIZES)
    assert check["sample_images"] == [[64, 64], *map(list, swept)] and len(swept) == 12
    assert all(rounds_apart(height, width, 64, 64) for height, width in swept)
    assert check["detections_compared"] >= 50 and check["unmatched"] == 0 and check["box_tolerance_px"] == 0.05
    assert check["box_difference_px"] == check["score_difference"] == 0  # TorchScript is exact

    model = torch.jit.load(str(out / "model.pt"))  # what a program without losslab does
    _, detections = model([IMAGE])
    expected = reference(run_dir)
    assert_same_detections(expected, detections[0])
    assert torch.equal(detections[0]["boxes"], expected["boxes"])
    assert_plain_data(meta)


def assert_plain_data(metadata) -> None:
    """Metadata holds data: numbers, lists, names and short tokens, never a sentence (class names may hold spaces)."""
    for key, value in metadata.items():
        if isinstance(value, dict):
            assert_plain_data(value)
        elif key != "classes":
            for item in value if isinstance(value, list) else [value]:
                assert not isinstance(item, str) or (" " not in item and len(item) <= 40), (key, item)


def test_onnx_export_reproduces_the_model_with_onnxruntime_beside_a_torchscript_export(tmp_path, monkeypatch):
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")
    run_dir = untrained_run(tmp_path / "run", "model=faster_rcnn")
    with monkeypatch.context() as pretend:  # a TorchScript export's files, quickly: one sample, a stand-in model
        pretend.setattr(exporting, "save_torchscript", pretend_export(lambda detections: detections))
        pretend.setattr(exporting, "detection_sample_sizes", lambda low, high, count: [(low, low)])
        export_run(run_dir, "torchscript", out=tmp_path / "out")
    result = export_run(run_dir, "onnx", out=tmp_path / "out")
    assert result.model_file == tmp_path / "out" / "model.onnx" and result.differences.detections > 0
    # Every swept size rounds apart in float32: before the ONNX graph computed the resize in float64 these gave
    # another input size, and kept detections without a counterpart.
    assert result.samples == 13 and result.differences.unmatched == 0
    assert result.differences.box <= export_check.BOX_TOLERANCE
    assert result.differences.score <= export_check.SCORE_TOLERANCE
    meta = json.loads(result.metadata_file.read_text())
    assert result.metadata_file.name == "model.onnx.json"
    assert meta["format"] == "onnx" and meta["file"] == "model.onnx"
    assert meta["outputs"] == ["boxes", "labels", "scores"] and meta["call"] == {"images_per_call": 1}
    assert_plain_data(meta)
    torchscript = json.loads((tmp_path / "out" / "model.pt.json").read_text())  # each format keeps its own
    assert torchscript["format"] == "torchscript" and torchscript["file"] == "model.pt"

    session = onnxruntime.InferenceSession(str(result.model_file), providers=["CPUExecutionProvider"])
    outputs = dict(zip(meta["outputs"], session.run(None, {"image": IMAGE.numpy()}), strict=True))
    detections = {name: torch.from_numpy(value) for name, value in outputs.items()}
    assert_same_detections(reference(run_dir), detections)


def pretend_export(change):
    """A save_torchscript stand-in: writes a placeholder file and predicts as the PyTorch model, with `change` applied
    to the detections of every image."""

    def save(model, path, unpack):
        path.write_bytes(b"a model")

        def predict(image):
            with torch.inference_mode():
                return change(unpack(([], model([image]))))
        return predict
    return save


def test_an_unfaithful_export_is_refused_and_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    run_dir = untrained_run(tmp_path / "run", "model=retinanet")
    # The verdict is the point here, not the samples.
    monkeypatch.setattr(exporting, "detection_sample_sizes", lambda low, high, count: [(low, low), (600, 800)])
    shifted = pretend_export(lambda found: {**found, "boxes": found["boxes"] + torch.tensor([1.0, 0.0, 1.0, 0.0])})
    monkeypatch.setattr(exporting, "save_torchscript", shifted)
    # 1 px in the 64 x 64 sample, which the model takes as it is; 0.1 px of its input in the photo it shrinks.
    with pytest.raises(LosslabError, match=r"boxes by up to 1 px of the model's input \(tolerance 0.025, "
                                           r"--tolerance\), scores by up to 0 .* largest box difference is on sample "
                                           r"image 64x64"):
        export_run(run_dir)
    assert not (run_dir / "export").exists()
    assert losslab_main(["export", str(run_dir), "--out", str(tmp_path / "new" / "folders")]) == 1
    assert "boxes by up to 1 px" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert losslab_main(["export", str(run_dir), "--tolerance", "1.5"]) == 0  # --tolerance decides
    assert "boxes differ by up to 1 px of the model's input" in capsys.readouterr().out


def detections(boxes: list, labels: list, scores: list) -> dict:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels),
            "scores": torch.tensor(scores)}


# What a trained model finds: two kept detections (threshold 0.5), one near the cut, a tail of low scores.
FOUND = detections([[10, 10, 50, 50], [60, 5, 90, 40], [0, 0, 20, 20], [30, 30, 40, 40], [5, 50, 25, 60]],
                   [1, 2, 2, 1, 3], [0.9, 0.7, 0.50002, 0.01, 1.2e-8])
TOLERANCE = export_check.Differences(export_check.BOX_TOLERANCE, export_check.SCORE_TOLERANCE)
IMAGE = torch.zeros(3, 600, 800)


def check(found: dict, tolerance=TOLERANCE, scale: float = 1.0, threshold: float = 0.5):
    return export_check.compare_detections([IMAGE], [FOUND], [found], tolerance, threshold, [scale])


def changed(rows: list[int] | None = None, **values) -> dict:
    """FOUND without the detections not in `rows`, and with `values` (lists, one per kept row) in place."""
    rows = list(range(len(FOUND["scores"]))) if rows is None else rows
    return {**{name: value[rows] for name, value in FOUND.items()},
            **{name: torch.tensor(value, dtype=FOUND[name].dtype) for name, value in values.items()}}


def test_the_check_compares_what_a_user_keeps_and_lets_the_far_tail_differ(monkeypatch):
    """RetinaNet's ONNX file once left out one of 127 detections, scoring 1.2e-8: not what a user keeps."""
    monkeypatch.setattr(export_check, "ALWAYS_COMPARED", 2)
    assert check(changed([0, 1, 2, 3])).detections == 3  # the 1.2e-8 one is gone: accepted
    # 0.50002 here, 0.49998 there: kept on one side only, still paired (down to 0.5 minus the score tolerance).
    assert check(changed(scores=[0.9, 0.7, 0.49998, 0.01, 1.2e-8])).score == pytest.approx(4e-5, abs=1e-6)
    # Two kept detections the export lacks (its label 3 at the 0.50002 box), one it has beyond the PyTorch model.
    with pytest.raises(LosslabError, match=r"3 kept detection\(s\) without a counterpart \(the same label, IoU 0.5 or "
                                           r"more\), the first on sample image 600x800 \(height x width\): the "
                                           r"exported model lacks a detection that the PyTorch model has: label 2, "
                                           r"score 0.7, box \[60.0, 5.0, 90.0, 40.0\]"):
        check(changed([0, 2, 3, 4], labels=[1, 3, 1, 3]))
    with pytest.raises(LosslabError, match="1 kept detection.* on sample image 600x800 .*: the exported model has a "
                                           "detection that the PyTorch model lacks: label 3, score 0.6"):
        check(changed(scores=[0.9, 0.7, 0.50002, 0.6, 1.2e-8], labels=[1, 2, 2, 3, 3]))
    # When fewer than ALWAYS_COMPARED detections reach the threshold, the best ones are compared all the same.
    assert check(FOUND, threshold=0.95).detections == 2


def test_box_differences_are_measured_in_the_models_input_pixels_against_the_tolerances():
    shifted = changed(boxes=(FOUND["boxes"] + torch.tensor([0.5, 0.0, 0.5, 0.0])).tolist())
    assert check(shifted, scale=0.01).box == pytest.approx(0.005)  # a 1920 px photo seen at 19 px: within 0.025
    with pytest.raises(LosslabError, match=r"boxes by up to 0.05 px of the model's input \(tolerance 0.025, "
                                           r"--tolerance\), scores by up to 0 \(tolerance 0.003, --score-tolerance\) "
                                           r"over 5 matched pair\(s\); the largest box difference is on sample image "
                                           r"600x800 \(height x width\), at label 1, score 0.9"):
        check(shifted, scale=0.1)
    assert check(shifted, export_check.Differences(0.06, 1e-4), scale=0.1).box == pytest.approx(0.05)
    lower = changed(scores=torch.where(FOUND["scores"] > 0.1, FOUND["scores"] - 5e-5, FOUND["scores"]).tolist())
    with pytest.raises(LosslabError, match=r"scores by up to 5e-05 \(tolerance 1e-05, --score-tolerance\)"):
        check(lower, export_check.Differences(0.01, 1e-5))


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


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_a_segmenter_export_resizes_sizes_that_round_apart_as_pytorch_does(format, tmp_path):
    """With torchvision's own transform the files' probabilities differed by up to 1e-3 on these sizes."""
    if format == "onnx":
        pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")
    torch.manual_seed(0)
    segmenter = build_model(compose_config(TINY_SEGMENTATION), num_classes=4).eval()
    exportable = exporting.segmentation_export(segmenter, ["background", *CLASSES], 1e-4)
    exported = exporting.save(exportable, format, tmp_path / "model")
    for height, width in sizes_rounding_apart(64, 64, 4):
        image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.inference_mode():
            expected = exportable.model([image])[0]
        found = exported(image)
        assert torch.equal(found["mask"], expected["mask"])
        assert (found["probabilities"] - expected["probabilities"]).abs().max() <= 1e-6

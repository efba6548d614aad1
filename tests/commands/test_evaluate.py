"""`losslab evaluate RUN_DIR`: exports that pycocotools reads back to the same mAP, plots, errors."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import tiny_config
from losslab import run
from losslab.cli import main as losslab_main
from losslab.commands.evaluate import evaluate_run
from losslab.errors import LosslabError


@pytest.fixture(scope="module")
def finished(module_tmp_path):
    run_dir = module_tmp_path
    run(tiny_config("model=mask_rcnn", "trainer.max_epochs=2", "eval.every=0", run_dir=run_dir))
    return run_dir


def test_evaluate_writes_coco_exports_whose_map_pycocotools_reproduces(finished, capsys):
    assert losslab_main(["evaluate", str(finished), "--split", "test", "--score-threshold", "0.05"]) == 0
    assert "mAP" in capsys.readouterr().out
    out = finished / "eval_test"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["checkpoint"] == "best" and metrics["images"] == 2
    assert metrics["score_threshold"] == 0.05
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(out / "ground_truth.json"))
        predictions = json.loads((out / "predictions.json").read_text())
        assert predictions, "the model predicts something at score threshold 0.05"
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(str(out / "predictions.json")), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert metrics["mAP"] == pytest.approx(max(0.0, evaluation.stats[0]), abs=1e-9)
    assert metrics["mAP50"] == pytest.approx(max(0.0, evaluation.stats[1]), abs=1e-9)
    assert "mask_mAP" in metrics and all("segmentation" in p for p in predictions)
    split = json.loads((finished / "split.json").read_text())
    assert sorted(image["id"] for image in ground_truth.dataset["images"]) == sorted(split["test"])
    matrix = metrics["confusion_matrix"]
    ground_truth_per_class = [sum(row) for row in matrix[1:]]  # every object is matched or missed exactly once
    assert len(matrix) == 4 and sum(ground_truth_per_class) == len(ground_truth.dataset["annotations"])
    for name in ("pr_curve.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 1000


def test_evaluate_explains_bad_requests(finished, tmp_path):
    with pytest.raises(LosslabError, match="expected a losslab run folder"):
        evaluate_run(tmp_path)
    (finished / "checkpoints" / "junk.pt").write_bytes(b"junk")
    with pytest.raises(LosslabError, match="could not be read"):
        evaluate_run(finished, checkpoint="junk")


def test_inference_commands_run_on_the_cpu_for_a_run_trained_on_cuda(finished, tmp_path):
    """A run whose config says trainer.device=cuda is evaluated, predicted and exported on a CPU-only machine:
    inference never resolves the training device."""
    import shutil

    from losslab.commands.export import export_run
    from losslab.commands.predict import predict_images

    copy = tmp_path / "cuda_run"
    shutil.copytree(finished, copy)
    config = copy / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("device: cpu", "device: cuda"))
    assert "device: cuda" in config.read_text()
    assert evaluate_run(copy, "test", device="cpu", progress=False)["mAP"] >= 0.0
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 48), (120, 30, 200)).save(images / "one.png")
    assert predict_images(copy, [images], device="cpu", progress=False).predicted == 1
    assert export_run(copy, out=tmp_path / "export").model_file.is_file()


def test_evaluate_writes_elsewhere_with_out(finished, tmp_path, capsys):
    before = sorted(p.name for p in finished.iterdir())
    assert losslab_main(["evaluate", str(finished), "--split", "test", "--out", str(tmp_path / "elsewhere")]) == 0
    assert f"written to {tmp_path / 'elsewhere'}" in capsys.readouterr().out
    written = {p.name for p in (tmp_path / "elsewhere").iterdir()}
    assert {"metrics.json", "predictions.json", "ground_truth.json", "pr_curve.png"} <= written
    assert sorted(p.name for p in finished.iterdir()) == before

"""`losslab predict RUN_DIR SOURCE...`: drawings of the input's size, COCO results that pycocotools reads,
unreadable files skipped without stopping the batch, and clear errors."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from pycocotools.coco import COCO
from torchvision.io import decode_image, encode_jpeg, write_png

from conftest import tiny_config
from losslab import build_model, run
from losslab.cli import main as losslab_main
from losslab.commands.predict import predict_images
from losslab.commands.saved_model import load_saved_model
from losslab.errors import LosslabError
from losslab.tasks.detection import draw_detections
from losslab.training.checkpoints import save_checkpoint

CLASSES = ["circle", "square", "triangle"]  # the shapes dataset's, in label order


def untrained_run(run_dir: Path, *overrides: str) -> Path:
    """A run folder as `train` leaves it (config, checkpoint with class names), holding the untrained weights of
    the tiny configured model: what predict and export read, in a second instead of a training run."""
    cfg = tiny_config(*overrides, run_dir=run_dir)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=len(CLASSES))
    save_checkpoint(run_dir / "checkpoints" / "best.pt", {"model": model.state_dict(), "epoch": 0,
                                                          "classes": CLASSES})
    return run_dir


def random_image(height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (channels, height, width), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def trained(module_tmp_path):
    """A really trained run: its checkpoint has no class names, so they come from summary.json."""
    run_dir = module_tmp_path / "run"
    run(tiny_config("eval.every=0", run_dir=run_dir))
    return run_dir


@pytest.fixture(scope="module")
def images(module_tmp_path):
    """A folder of images of several sizes and formats, two unreadable files, a text file and a sub-folder
    holding an image with a stem that repeats one in the folder."""
    folder = module_tmp_path / "images"
    folder.mkdir()
    write_png(random_image(64, 64, seed=1), str(folder / "a.png"))
    (folder / "b.jpg").write_bytes(bytes(encode_jpeg(random_image(48, 80, seed=2)).tolist()))
    write_png(random_image(40, 60, channels=1, seed=3), str(folder / "c.png"))  # grayscale
    Image.new("RGB", (50, 30), "red").save(folder / "d.BMP")  # upper-case extension, read by Pillow
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    write_png(random_image(70, 56, seed=4), str(folder / "sub" / "a.png"))
    return folder


# The order the sources below expand to; image_id is the position in it.
ORDER = ["a.png", "b.jpg", "broken.jpg", "c.png", "d.BMP", "empty.png", "sub/a.png"]
SIZES = {"a.png": (64, 64), "b.jpg": (48, 80), "c.png": (40, 60), "d.BMP": (30, 50), "sub/a.png": (70, 56)}


@pytest.fixture(scope="module")
def predicted(trained, images, module_tmp_path):
    out = module_tmp_path / "predict"
    # The folder, a glob repeating b.jpg (predicted once) and the sub-folder's image by a recursive glob.
    sources = [images, str(images / "*.jpg"), str(images / "**" / "sub" / "*.png")]
    return predict_images(trained, sources, score_threshold=0.0, out=out, progress=False)


def test_predict_draws_every_readable_image_at_its_own_size(predicted):
    assert predicted.predicted == 5 and predicted.detections > 0
    drawn = {"a.png": "a.png", "b.jpg": "b.png", "c.png": "c.png", "d.BMP": "d.png", "sub/a.png": "a_1.png"}
    assert sorted(p.name for p in predicted.out_dir.glob("*.png")) == sorted(drawn.values())
    for source, name in drawn.items():
        image = decode_image(str(predicted.out_dir / name))
        assert image.shape == (3, *SIZES[source]), name


def test_predict_skips_unreadable_files_and_says_why(predicted, images):
    assert [(path.name, bool(reason)) for path, reason in predicted.skipped] == [("broken.jpg", True),
                                                                                 ("empty.png", True)]
    assert all("cpp:" not in reason for _, reason in predicted.skipped)  # no C++ source locations


def test_predictions_json_is_coco_results_that_pycocotools_loads(predicted, images):
    results = json.loads((predicted.out_dir / "predictions.json").read_text())
    assert results and {"image_id", "file_name", "category_id", "bbox", "score"} <= set(results[0])
    names = [str((images / name).absolute()) for name in ORDER]
    assert all(r["image_id"] == names.index(r["file_name"]) for r in results)
    assert {r["image_id"] for r in results} <= {ORDER.index(name) for name in SIZES}
    assert {r["category_id"] for r in results} <= {1, 2, 3}
    for r in results:
        height, width = SIZES[ORDER[r["image_id"]]]
        x, y, w, h = r["bbox"]
        assert x >= 0 and y >= 0 and w >= 0 and h >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3

    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": ORDER.index(name), "file_name": name, "height": h, "width": w}
                   for name, (h, w) in SIZES.items()],
        "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                         "iscrowd": 0}],
        "categories": [{"id": k, "name": name} for k, name in enumerate(CLASSES, start=1)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        loaded = ground_truth.loadRes(str(predicted.out_dir / "predictions.json"))
    assert len(loaded.getAnnIds()) == len(results)


def test_predict_command_reports_skipped_files_and_goes_on(trained, images, tmp_path, capsys, caplog, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.chdir(images.parent)
    with caplog.at_level(logging.WARNING, logger="losslab"):
        code = losslab_main(["predict", str(trained), f"{images.name}/broken.jpg", str(images / "c.png"),
                             "--out", str(out), "--score-threshold", "0.01", "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "predicted 1 image, " in printed and "skipped 1 file that" in printed and str(out) in printed
    # The skipped file is named as the user gave it, relative to the working folder.
    assert any(record.getMessage().startswith(f"skipped {images.name}/broken.jpg: ") for record in caplog.records)
    assert (out / "c.png").is_file() and (out / "predictions.json").is_file()


def test_an_images_predictions_do_not_depend_on_the_images_before_it(trained, tmp_path):
    # torchvision's RoI pooling infers its scales from the first image it sees; a wide first image used to skew them.
    write_png(random_image(40, 120, seed=5), str(tmp_path / "0_wide.png"))
    write_png(random_image(64, 64, seed=6), str(tmp_path / "1_square.png"))
    alone = predict_images(trained, [tmp_path / "1_square.png"], score_threshold=0.0, out=tmp_path / "alone",
                           progress=False)
    after = predict_images(trained, [tmp_path / "0_wide.png", tmp_path / "1_square.png"], score_threshold=0.0,
                           out=tmp_path / "after", progress=False)

    def detections(result, image_id):
        return [{k: v for k, v in r.items() if k != "image_id"}
                for r in json.loads((result.out_dir / "predictions.json").read_text()) if r["image_id"] == image_id]

    assert detections(alone, 0) and detections(after, 1) == detections(alone, 0)


def test_portrait_and_landscape_photos_predicted_together_get_their_detections_alone(tmp_path):
    # Batched, torchvision would pad the 64x28 portrait and the 30x64 landscape image to 64x64 (alone: 64x32, 32x64).
    run_dir = untrained_run(tmp_path / "run", "model=mask_rcnn")
    for name, (height, width), seed in (("portrait", (64, 28), 7), ("landscape", (30, 64), 8)):
        write_png(random_image(height, width, seed=seed), str(tmp_path / f"{name}.png"))
    files = [tmp_path / "portrait.png", tmp_path / "landscape.png"]
    together = predict_images(run_dir, files, score_threshold=0.0, out=tmp_path / "together", progress=False)
    records = json.loads((together.out_dir / "predictions.json").read_text())
    assert together.detections > 10
    for image_id, file in enumerate(files):
        alone = predict_images(run_dir, [file], score_threshold=0.0, out=tmp_path / file.stem, progress=False)
        assert [r for r in records if r["image_id"] == image_id] == \
            [{**r, "image_id": image_id} for r in json.loads((alone.out_dir / "predictions.json").read_text())]


def test_mask_rcnn_predictions_carry_masks_and_draw_them(tmp_path, images):
    run_dir = untrained_run(tmp_path / "run", "model=mask_rcnn")
    result = predict_images(run_dir, [images / "a.png"], score_threshold=0.0, out=tmp_path / "out", progress=False)
    results = json.loads((result.out_dir / "predictions.json").read_text())
    assert results and all(set(r["segmentation"]) == {"size", "counts"} for r in results)
    assert all(r["segmentation"]["size"] == [64, 64] for r in results)

    image = torch.zeros(3, 60, 80)
    boxes = {"boxes": torch.tensor([[10.0, 10.0, 70.0, 40.0]]), "labels": torch.tensor([1]),
             "scores": torch.tensor([0.9])}
    crops = torch.full((1, 28, 28), 0.8)  # the mask head's map of the box: the object fills it
    with_mask = draw_detections(image, {**boxes, "mask_crops": crops}, CLASSES)
    without = draw_detections(image, boxes, CLASSES)
    assert with_mask.shape == without.shape == (3, 60, 80)
    inside = (slice(None), slice(25, 36), slice(15, 65))  # within the box, below its label, off its outline
    assert with_mask[inside].any() and not without[inside].any()
    assert torch.equal(with_mask[:, 44:], without[:, 44:])  # the mask changes nothing outside its box


def test_predict_explains_bad_requests(trained, images, tmp_path, capsys):
    assert losslab_main(["predict", str(tmp_path / "nowhere"), str(images / "a.png")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("losslab predict: error: ") and "nowhere" in error and "run folder" in error

    (tmp_path / "empty").mkdir()
    assert losslab_main(["predict", str(trained), str(tmp_path / "empty"), str(tmp_path / "*.gif")]) == 1
    error = capsys.readouterr().err
    assert "no images found in" in error and str(tmp_path / "empty") in error and "*.gif" in error

    no_names = untrained_run(tmp_path / "no_names")
    state = torch.load(no_names / "checkpoints" / "best.pt", weights_only=True)
    save_checkpoint(no_names / "checkpoints" / "best.pt", {k: v for k, v in state.items() if k != "classes"})
    with pytest.raises(LosslabError, match="no class names"):
        load_saved_model(no_names)
    with pytest.raises(LosslabError, match="the run keeps only best.pt"):
        load_saved_model(no_names, checkpoint="last")

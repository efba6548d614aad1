"""`losslab data`: the audit of a tiny COCO folder made on the fly, as a user types it; its own folder only; bad input
is one clear error and exit code 1. A training run writes the same audit into its run folder and warns of a leak."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from in_process import losslab, train

# pycocotools 2.0 predates numpy 2's copy keyword and says so on every decode; harmless, and hidden outside tests.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def tiny_coco(folder, name: str, ids: list[int], size: int = 64):
    """COCO instances for images `ids` (one rectangle each, cat on odd ids, dog on even ones) in `folder`/images,
    each image file written unless it exists; the annotation file's path."""
    images_folder = folder / "images"
    images_folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in ids:
        path = images_folder / f"img{i}.png"
        if not path.exists():
            pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path)
        images.append({"id": i, "file_name": path.name, "width": size, "height": size})
        x0 = 4 + 3 * i
        annotations.append({"id": i, "image_id": i, "category_id": 2 - i % 2, "bbox": [x0, 8, 20, 24], "iscrowd": 0,
                            "segmentation": [[x0, 8, x0 + 20, 8, x0 + 20, 32, x0, 32]]})
    path = folder / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def leaking_coco(tmp_path) -> list[str]:
    """Overrides of data=coco with predefined train (images 1-6) and val (7, 8) files, image 8 a copy of image 2."""
    train_file = tiny_coco(tmp_path, "train.json", [1, 2, 3, 4, 5, 6])
    shutil.copyfile(tmp_path / "images" / "img2.png", tmp_path / "images" / "img8.png")
    val_file = tiny_coco(tmp_path, "val.json", [7, 8])
    return ["data=coco", f"data.images={tmp_path / 'images'}", "data.num_workers=0", "split=predefined",
            f"split.files.train={train_file}", f"split.files.val={val_file}"]


def test_the_audit_of_a_coco_folder_prints_the_table_and_writes_its_files(tmp_path):
    annotations = tiny_coco(tmp_path, "instances.json", list(range(1, 9)))
    overrides = ["data=coco", f"data.images={tmp_path / 'images'}", f"data.annotations={annotations}",
                 "split.train=0.5", "split.val=0.25", "split.test=0.25"]
    result = losslab("data", *overrides, "--out", str(tmp_path / "audit"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    numbers = json.loads((tmp_path / "audit" / "data_audit.json").read_text())
    assert [numbers["splits"][s]["images"] for s in ("train", "val", "test")] == [4, 2, 2]
    assert sum(numbers["splits"][s]["objects"] for s in ("train", "val", "test")) == 8
    total = {c["name"]: sum(numbers["splits"][s]["classes"][k]["objects"] for s in numbers["splits"])
             for k, c in enumerate(numbers["splits"]["train"]["classes"])}
    assert total == {"cat": 4, "dog": 4} and numbers["data"] == "coco" and numbers["leaks"]["images"] == 0
    assert (tmp_path / "audit" / "data_audit.png").stat().st_size > 10_000
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["train", "val", "test"] and lines[1].split() == ["images", "4", "2", "2"]
    assert "images in two splits: none" in result.stdout and "written to" in result.stdout
    again = losslab("data", *overrides, cwd=tmp_path)  # no --out: a new folder under outputs/audits/
    assert again.returncode == 0, again.stderr
    written = sorted(p.relative_to(tmp_path).parts[:2] for p in (tmp_path / "outputs").rglob("data_audit.*"))
    assert written == [("outputs", "audits")] * 2


def test_a_leak_between_split_files_is_found_and_reported(tmp_path):
    result = losslab("data", *leaking_coco(tmp_path), "--out", str(tmp_path / "audit"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    numbers = json.loads((tmp_path / "audit" / "data_audit.json").read_text())
    assert numbers["leaks"] == {"images": 1, "pairs": {"train/val": 1}, "examples": [{"train": [2], "val": [8]}]}
    assert "images in two splits: train/val 1" in result.stdout
    assert "1 image(s) are in two splits (train/val 1)" in result.stdout  # the suggestion


def test_the_audit_writes_only_into_its_own_folder(tmp_path):
    annotations = tiny_coco(tmp_path, "instances.json", list(range(1, 9)))
    overrides = ["data=coco", f"data.images={tmp_path / 'images'}", f"data.annotations={annotations}"]
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    result = losslab("data", *overrides, "--out", str(foreign), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--out" in result.stderr and "todo.txt" in result.stderr and "not an audit's" in result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["todo.txt"]
    earlier = tmp_path / "audit"
    assert losslab("data", *overrides, "--out", str(earlier), cwd=tmp_path).returncode == 0
    assert losslab("data", *overrides, "--out", str(earlier), cwd=tmp_path).returncode == 0  # an audit replaces one


def test_a_missing_annotation_file_is_one_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    missing = tmp_path / "nowhere.json"
    result = losslab("data", "data=coco", f"data.images={tmp_path / 'images'}", f"data.annotations={missing}",
                     cwd=tmp_path)
    assert result.returncode == 1
    assert f"data.annotations={missing}: does not exist; expected a COCO instances file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "outputs").exists()


def test_help_lists_the_data_verb(tmp_path):
    result = losslab("--help", cwd=tmp_path)
    assert "data" in result.stdout and "audit a dataset's splits" in result.stdout


def test_a_run_writes_its_data_audit_and_warns_of_a_leak(tmp_path):
    tiny = [o for o in TINY if not o.startswith(("data.num_images", "data.image_size", "data.max_objects"))]
    result = train(*leaking_coco(tmp_path), *tiny, f"run_dir={tmp_path / 'run'}", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    numbers = json.loads((tmp_path / "run" / "data_audit.json").read_text())
    assert numbers["leaks"]["pairs"] == {"train/val": 1} and numbers["splits"]["train"]["images"] == 6
    assert (tmp_path / "run" / "data_audit.png").is_file()
    warned = [line for line in output.splitlines() if "data audit:" in line]
    assert len(warned) == 1 and "1 image(s) are in two splits (train/val 1; same file content)" in warned[0]

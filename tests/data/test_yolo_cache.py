"""data.cache for data=yolo: the checked index of a data.yaml's label files and images is reused only while the yaml,
its list files and every entry of the image and label folders are unchanged."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from test_yolo import write_image, write_yolo

from conftest import counted_calls
from losslab import compose_config
from losslab.data import index_cache, yolo
from losslab.data.datasets import load_dataset
from losslab.data.index_cache import cache_folder, input_state
from losslab.data.yolo import YoloDataset
from losslab.data.yolo_layout import in_path_order

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SQUARE = "0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75"  # pixels 12..36 x 10..30 of a 48x40 image


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def builds(monkeypatch):
    """How many times the index was built (label files read, headers checked) rather than read from the cache."""
    return counted_calls(monkeypatch, yolo, "build_yolo_index")


def write_dataset(root):
    """Polygons beside a box (boxes as masks: a warning), a degenerate box (a warning), a label file without an image
    (a warning), a negative without a label file; val listed by a .txt file, its labels/ folder not made yet."""
    path = write_yolo(root, {"train": {"a.png": f"0 {SQUARE}\n1 0.125 0.125 0.25 0.25\n2 0.5 0.5 0 0.5\n",
                                       "b.png": "1 0 0 0.5 0 0 0.5\n", "c.png": None},
                             "val": {"d.png": None, "e.png": None}},
                      entries={"train": "images/train", "val": "val.txt"})
    (root / "val.txt").write_text("./images/val/d.png\n./images/val/e.png\n")
    (root / "labels" / "train" / "gone.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    return path


def contents(dataset: YoloDataset) -> list:
    """Everything a dataset hands out: records, classes, the split, and every item (pixels, boxes, labels, masks)."""
    items = []
    for image, target in (dataset[i] for i in range(len(dataset))):
        items.append((image.tolist(), {key: value.tolist() if torch.is_tensor(value) else value
                                       for key, value in target.items()}))
    records = [(r.image_id, r.target_id, r.file, r.name, r.boxes.tolist(), r.labels.tolist()) for r in dataset.records]
    return [records, dataset.classes, dataset.category_ids, dataset.image_ids, dataset.file_names, dataset.has_masks,
            dataset.split_of, dataset.image_labels(), [dataset.object_labels(i) for i in range(len(dataset))], items]


def warnings_of(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_second_load_reads_the_cache_gives_the_same_dataset_and_repeats_the_warnings(tmp_path, builds, caplog,
                                                                                       monkeypatch):
    path = write_dataset(tmp_path / "data")
    listing_before = sorted(str(p) for p in (tmp_path / "data").rglob("*"))
    with caplog.at_level(logging.INFO):
        first = YoloDataset(str(path))
    first_warnings, first_summary = warnings_of(caplog), caplog.records[-1].getMessage()
    caplog.clear()
    monkeypatch.setattr("losslab.data.yolo_index.read_labels", lambda *args: pytest.fail("a label file was read"))
    with caplog.at_level(logging.INFO):
        second = YoloDataset(str(path))
    assert len(builds) == 1
    assert contents(second) == contents(first)
    assert first.records[0].boxes.tolist() == [[12, 10, 36, 30], [0, 0, 12, 10]] and first.has_masks
    assert second.masks(0)[0].sum() == 24 * 20 and second.masks(0)[1].sum() == 120  # a polygon, a box as mask
    assert second.own_split() == first.own_split() == {"train": ["images/train/a.png", "images/train/b.png",
                                                                 "images/train/c.png"],
                                                       "val": ["images/val/d.png", "images/val/e.png"], "test": []}
    assert warnings_of(caplog) == first_warnings and len(first_warnings) == 3
    assert [w.split(": ", 1)[1][:20] for w in first_warnings] == ["dropped 1 box(es) wi", "1 object(s) are boxe",
                                                                  "1 label file(s) have"]
    assert first_summary.endswith("5 images (train 3, val 2; 3 without objects, 3 of them without a label file)")
    assert any(r.getMessage() == first_summary for r in caplog.records)
    assert any("yolo dataset index read from the cache" in r.getMessage() for r in caplog.records)
    assert sorted(str(p) for p in (tmp_path / "data").rglob("*")) == listing_before  # nothing beside the data
    assert [p.suffix for p in cache_folder().iterdir()] == [".npz"]


def _edit_label_file(root):
    (root / "labels" / "train" / "b.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    return "images/train/b.png", [[12, 10, 36, 30]], [3]


def _label_a_negative_without_a_label_folder(root):
    (root / "labels" / "val").mkdir()
    (root / "labels" / "val" / "d.txt").write_text("1 0.25 0.25 0.5 0.5\n")
    return "images/val/d.png", [[0, 0, 24, 20]], [2]


def _label_a_negative_beside_others(root):
    (root / "labels" / "train" / "c.txt").write_text("0 0.75 0.75 0.5 0.5\n")
    return "images/train/c.png", [[24, 20, 48, 40]], [1]


def _touch_an_image(root):
    stat = (root / "images" / "train" / "a.png").stat()
    os.utime(root / "images" / "train" / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def _replace_an_image_by_a_larger_one(root):
    write_image(root / "images" / "train" / "c.png", width=96, height=80)
    return "images/train/c.png", [], []


def _edit_the_yaml(root):
    (root / "data.yaml").write_text((root / "data.yaml").read_text().replace("val: val.txt", "val: images/val"))


def _edit_the_list_file(root):
    (root / "val.txt").write_text("./images/val/d.png\n")


@pytest.mark.parametrize("change", [_edit_label_file, _label_a_negative_without_a_label_folder,
                                    _label_a_negative_beside_others, _touch_an_image,
                                    _replace_an_image_by_a_larger_one, _edit_the_yaml, _edit_the_list_file])
def test_any_change_to_the_files_refuses_the_cache(tmp_path, builds, change):
    path = write_dataset(tmp_path / "data")
    before = YoloDataset(str(path))
    expected = change(tmp_path / "data")
    changed = YoloDataset(str(path))
    assert len(builds) == 2
    if expected:
        image_id, boxes, labels = expected
        record = changed.records[changed.image_ids.index(image_id)]
        assert (record.boxes.tolist(), record.labels.tolist()) == (boxes, labels)
        assert record.boxes.tolist() != before.records[before.image_ids.index(image_id)].boxes.tolist() or \
            record.file != before.records[before.image_ids.index(image_id)].file
    if change is _edit_the_list_file:
        assert changed.split_of["val"] == ["images/val/d.png"] and len(changed) == len(before) - 1
    assert contents(YoloDataset(str(path))) == contents(changed)
    assert len(builds) == 2  # the rebuilt index is cached in turn
    assert contents(YoloDataset(str(path), cache=False)) == contents(changed)


def test_data_cache_false_reads_and_writes_nothing(tmp_path, builds, own_cache):
    path = write_dataset(tmp_path / "data")
    cfg = compose_config(["data=yolo", f"data.yaml={path}", "data.cache=false"])
    assert compose_config(["data=yolo", f"data.yaml={path}"]).data.cache is True
    for _ in range(2):
        assert len(load_dataset(OmegaConf.to_container(cfg.data, resolve=True))) == 5
    assert len(builds) == 2 and not own_cache.exists()
    YoloDataset(str(path))
    YoloDataset(str(path), cache=False)
    assert len(builds) == 4  # a cache that exists is not read either


def test_the_state_counts_a_missing_folder_and_the_folders_are_the_outermost(tmp_path):
    missing = tmp_path / "labels" / "val"
    state = input_state([], [missing])
    assert input_state([], [missing]) == state
    missing.mkdir(parents=True)
    assert input_state([], [missing]) != state
    folders = [tmp_path / "a", tmp_path / "a b", tmp_path / "a" / "x", tmp_path / "a b" / "y" / "..", tmp_path / "c"]
    assert index_cache.outermost(folders) == [tmp_path / "a", tmp_path / "a b", tmp_path / "c"]


def test_images_are_in_paths_order_as_path_sorts_them():
    paths = [Path(name) for name in ("/d/a b/x.png", "/d/a/x.png", "/d/a-b/x.png", "/d/a/x/y.png", "/d/A/z.png",
                                     "/d/a.png", "/d/a/x.png.png", "/e.png")]
    assert in_path_order(set(paths)) == sorted(paths)

"""data.cache: a checked COCO index is reused only while every file it was read from is unchanged."""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import counted_calls
from losslab import compose_config
from losslab.data import coco
from losslab.data.coco import CocoDataset
from losslab.data.datasets import load_dataset
from losslab.data.index_cache import cache_folder
from losslab.errors import LosslabError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

SIDE = 24


def write_dataset(folder, images: int = 4) -> tuple:
    """`images` JPEGs with two objects each (a polygon, and a box past the edge), one degenerate box, and the file."""
    (folder / "images").mkdir(parents=True)
    entries, annotations = [], []
    for i in range(1, images + 1):
        pixels = np.random.default_rng(i).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"{i}.jpg")
        entries.append({"id": i, "file_name": f"{i}.jpg", "width": SIDE, "height": SIDE})
        annotations += [{"id": 10 * i, "image_id": i, "category_id": 1 + i % 2, "bbox": [2, 3, 10, 8],
                         "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]},
                        {"id": 10 * i + 1, "image_id": i, "category_id": 2, "bbox": [15, 15, 20, 4]}]
    annotations.append({"id": 999, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 4]})  # dropped, with a warning
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    return folder / "images", path


@pytest.fixture
def builds(monkeypatch):
    """How many times the index was built (read and checked) rather than read from the cache."""
    return counted_calls(monkeypatch, coco, "build_coco_index")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def contents(dataset: CocoDataset) -> list:
    """Everything a dataset hands out: records, classes, and every item (pixels, boxes, labels, masks)."""
    # NaN (an annotation without its own area) written as a string: NaN != NaN would make equal datasets differ.
    items = [(image, {key: repr(value.tolist()) if torch.is_tensor(value) else value for key, value in target.items()})
             for image, target in (dataset[i] for i in range(len(dataset)))]
    return [[(r.image_id, r.target_id, r.file, r.name, r.boxes.tolist(), r.labels.tolist()) for r in dataset.records],
            dataset.classes, dataset.category_ids, dataset.has_masks, dataset.index.crowds,
            [(image.tolist(), target) for image, target in items]]


def test_a_second_load_reads_the_cache_gives_the_same_dataset_and_repeats_the_warnings(tmp_path, builds, caplog):
    images, annotations = write_dataset(tmp_path / "data")
    listing_before = sorted(os.listdir(tmp_path / "data"))
    with caplog.at_level(logging.INFO):
        first = CocoDataset(str(images), str(annotations))
    first_warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        second = CocoDataset(str(images), str(annotations))
    assert len(builds) == 1  # the checks ran once
    assert contents(second) == contents(first)
    assert len(first) == 4 and first.has_masks and first.records[0].boxes.tolist() == [[2, 3, 12, 11], [15, 15, 24, 19]]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == first_warnings
    assert any("zero or negative width" in message for message in first_warnings)
    assert any("read from the cache" in r.getMessage() for r in caplog.records)
    assert sorted(os.listdir(tmp_path / "data")) == listing_before  # nothing written beside the data
    assert [p.suffix for p in cache_folder().iterdir()] == [".npz"]  # one file, no temporary left


def _edit_annotations(images, annotations):
    content = json.loads(annotations.read_text())
    content["annotations"][0]["bbox"] = [1, 1, 5, 5]
    annotations.write_text(json.dumps(content))
    return [[1, 1, 6, 6], [15, 15, 24, 19]]


def _touch_image(images, annotations):
    stat = (images / "1.jpg").stat()
    os.utime(images / "1.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


def _replace_image_keeping_size_and_time(images, annotations):
    # another picture under the same name, its size and modification time set back as `cp -p` would
    stat = (images / "1.jpg").stat()
    shutil.copyfile(images / "2.jpg", images / "new.jpg")
    os.replace(images / "new.jpg", images / "1.jpg")
    os.utime(images / "1.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _add_image(images, annotations):
    shutil.copyfile(images / "2.jpg", images / "5.jpg")


@pytest.mark.parametrize("change", [_edit_annotations, _touch_image, _replace_image_keeping_size_and_time,
                                    _add_image])
def test_any_change_to_the_files_refuses_the_cache(tmp_path, builds, change):
    images, annotations = write_dataset(tmp_path / "data")
    CocoDataset(str(images), str(annotations))
    boxes = change(images, annotations)
    changed = CocoDataset(str(images), str(annotations))
    assert len(builds) == 2
    if boxes:
        assert changed.records[0].boxes.tolist() == boxes
    assert contents(CocoDataset(str(images), str(annotations))) == contents(changed)
    assert len(builds) == 2  # the rebuilt index is cached in turn
    assert contents(changed) == contents(CocoDataset(str(images), str(annotations), cache=False))


def test_a_removed_image_is_refused_not_served_from_the_cache(tmp_path, builds):
    images, annotations = write_dataset(tmp_path / "data")
    CocoDataset(str(images), str(annotations))
    (images / "3.jpg").unlink()
    with pytest.raises(LosslabError, match="1 of the 4 images .* are not in .*: 3.jpg"):
        CocoDataset(str(images), str(annotations))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path, builds, caplog, damage):
    images, annotations = write_dataset(tmp_path / "data")
    expected = contents(CocoDataset(str(images), str(annotations)))
    [cached] = cache_folder().iterdir()
    data = cached.read_bytes()
    cached.write_bytes({"truncate": data[:len(data) // 2], "garbage": b"not a cache" * 100, "empty": b""}[damage])
    with caplog.at_level(logging.WARNING):
        assert contents(CocoDataset(str(images), str(annotations))) == expected
    assert len(builds) == 2
    assert "cannot be read" in caplog.text and "building it again" in caplog.text
    CocoDataset(str(images), str(annotations))
    assert len(builds) == 2  # rewritten whole


def test_data_cache_false_reads_and_writes_nothing(tmp_path, builds, own_cache):
    images, annotations = write_dataset(tmp_path / "data")
    cfg = compose_config(["data=coco", f"data.images={images}", f"data.annotations={annotations}", "data.cache=false"])
    for _ in range(2):
        assert len(load_dataset(OmegaConf.to_container(cfg.data, resolve=True))) == 4
    assert len(builds) == 2 and not own_cache.exists()
    CocoDataset(str(images), str(annotations))
    CocoDataset(str(images), str(annotations), cache=False)
    assert len(builds) == 4  # a cache that exists is not read either


def test_the_cache_folder_is_the_users_unless_losslab_cache_names_one(tmp_path, monkeypatch):
    assert cache_folder() == tmp_path / "cache" / "datasets"
    monkeypatch.delenv("LOSSLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "losslab" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "losslab" / "datasets"


def test_other_options_are_other_indexes(tmp_path, builds):
    images, annotations = write_dataset(tmp_path / "data")
    content = json.loads(annotations.read_text())
    content["images"].append({"id": 5, "file_name": "5.jpg", "width": SIDE, "height": SIDE})  # no annotations
    shutil.copyfile(images / "1.jpg", images / "5.jpg")
    annotations.write_text(json.dumps(content))
    assert len(CocoDataset(str(images), str(annotations))) == 5
    assert len(CocoDataset(str(images), str(annotations), keep_empty=False)) == 4
    assert len(CocoDataset(str(images), str(annotations))) == 5
    assert len(builds) == 2

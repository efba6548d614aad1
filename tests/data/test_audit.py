"""The data audit: exact numbers from hand-built images (classes, imbalance, sizes, duplicates, leaks), the facts read
from built datasets of every kind, the suggestions and warnings, and data_audit.json and data_audit.png holding
them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle
from test_coco import annotation, image, write_coco
from test_voc import small_voc, voc_xml, write_voc

from losslab.data.audit import IMBALANCE_RATIO, ImageFacts, audit, figure_points, run_warnings
from losslab.data.audit_sources import content_digests, file_digest, split_facts
from losslab.data.datasets import build_datasets
from losslab.data.segmentation import build_segmentation_datasets
from losslab.data.split import write_split
from losslab.data.voc import VocDataset
from losslab.reporting.audit_figure import audit_figure
from losslab.training.data_audit import audit_data, write_audit

CLASSES = ("cat", "dog", "bird")
SHAPES = {"name": "shapes", "num_images": 6, "image_size": 32, "min_objects": 1, "max_objects": 2, "seed": 0,
          "object_size": [0.1, 0.2]}
PREDEFINED = {"name": "predefined", "from_run": None, "seed": 0}


def facts(image_id, boxes, labels, width=100, height=80, digest=None, classes=3) -> ImageFacts:
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    return ImageFacts(image_id, width, height, np.bincount(np.array(labels, dtype=int) - 1, minlength=classes), boxes,
                      digest)


def box(x, y, side_w, side_h):
    return [x, y, x + side_w, y + side_h]


# train: 12 cats, 1 dog, no bird; sizes: small (10x10, 31x31), medium (32x32, 50x60), large (96x96 on a big image)
TRAIN = [
    facts(1, [box(10, 10, 10, 10)] * 6, [1] * 6, digest="a"),
    facts(2, [box(0, 0, 31, 31)] * 6, [1] * 6, digest="b"),  # at the edge: touching
    facts(3, [box(5, 5, 32, 32)], [2], digest="a"),  # same content as image 1: a duplicate
    facts(4, [], [], digest="c"),  # no objects
    facts(5, [box(4, 4, 96, 96)], [1], width=200, height=100, digest="d"),
]
VAL = [facts(10, [box(10, 10, 50, 60)], [3], digest="c"),  # image 4's content: a leak train/val
       facts(11, [box(10, 10, 20, 20)], [2], digest="e")]


def test_hand_built_images_give_the_exact_numbers():
    numbers = audit({"train": TRAIN, "val": VAL, "test": []}, CLASSES)
    train = numbers["splits"]["train"]
    assert train["images"] == 5 and train["objects"] == 14 and train["images_without_objects"] == 1
    assert train["classes"] == [{"name": "cat", "objects": 13, "images": 3}, {"name": "dog", "objects": 1, "images": 1},
                                {"name": "bird", "objects": 0, "images": 0}]
    assert train["imbalance_ratio"] == 13.0 and train["classes_without_objects"] == ["bird"]
    assert train["sizes"] == {"small": 12, "medium": 1, "large": 1}  # 31x31 = 961 < 1024 is small, 32x32 is not
    assert train["objects_per_image"]["max"] == 6 and train["objects_per_image"]["mean"] == pytest.approx(14 / 5)
    assert train["relative_size"]["max"] == pytest.approx(96 / np.sqrt(200 * 100), abs=1e-3)
    assert train["aspect_ratio"]["median"] == 1.0
    assert train["touching_edge"] == 6 + 1  # the six boxes at (0, 0), and the 96 px one reaching y=100 of 100
    assert train["image_sizes"]["distinct"] == 2 and train["image_sizes"]["most_common"][0] == [100, 80, 4]
    assert train["duplicates"] == {"groups": 1, "images": 1, "examples": [[1, 3]]}
    assert numbers["leaks"] == {"images": 1, "pairs": {"train/val": 1}, "examples": [{"train": [4], "val": [10]}]}
    val = numbers["splits"]["val"]
    assert val["sizes"] == {"small": 1, "medium": 1, "large": 0} and val["aspect_ratio"]["min"] == round(50 / 60, 3)
    assert numbers["splits"]["test"]["images"] == 0 and numbers["splits"]["test"]["objects_per_image"] is None


def test_suggestions_and_warnings_follow_the_thresholds():
    numbers = audit({"train": TRAIN, "val": VAL, "test": []}, CLASSES)
    lines = numbers["suggestions"]
    assert any("class imbalance 13:1" in line and "loss=weighted_ce" in line and "loss=focal" in line for line in lines)
    assert any("86% of train objects are small" in line and "model.min_size" in line for line in lines)  # 12 of 14
    assert any("no objects of bird" in line for line in lines)
    assert any("1 image(s) are in two splits (train/val 1)" in line for line in lines)
    warned = run_warnings(numbers)
    assert len(warned) == 2 and "two splits" in warned[0] and "no objects of bird" in warned[1]
    balanced = [facts(i, [box(0, 0, 40, 40)] * 2, [1, 2], digest=str(i), classes=2) for i in range(4)]
    quiet = audit({"train": balanced, "val": [], "test": []}, CLASSES[:2])
    assert quiet["splits"]["train"]["imbalance_ratio"] == 1.0 and quiet["suggestions"] == [] and not run_warnings(quiet)
    just_below = [facts(1, [box(0, 0, 40, 40)] * 9 + [box(0, 0, 40, 40)], [1] * 9 + [2], classes=2)]
    assert audit({"train": just_below}, CLASSES[:2])["splits"]["train"]["imbalance_ratio"] == 9.0 < IMBALANCE_RATIO
    assert not audit({"train": just_below}, CLASSES[:2])["suggestions"]


def test_class_masks_count_pixels_and_leave_the_background_out_of_objects():
    pixels = [ImageFacts(1, 4, 4, np.array([10, 6, 0]), np.zeros((0, 4))),
              ImageFacts(2, 4, 4, np.array([16, 0, 0]), np.zeros((0, 4)))]
    numbers = audit({"train": pixels}, ("background", "road", "car"), unit="pixels", background_first=True)
    train = numbers["splits"]["train"]
    assert train["pixels"] == 6 and train["images_without_objects"] == 1
    assert train["classes"][0] == {"name": "background", "pixels": 26, "images": 2}
    assert train["classes_without_objects"] == ["car"] and train["imbalance_ratio"] == 1.0  # road alone
    assert train["sizes"] == {"small": 0, "medium": 0, "large": 0} and train["aspect_ratio"] is None


def test_coco_facts_come_from_the_records_and_file_bytes(tmp_path):
    images = [image(i, width=48, height=40) for i in (1, 2, 3, 4)]
    annotations = [annotation(1, 1, 1, [0, 0, 60, 10]), annotation(2, 1, 3, [5, 5, 10, 20]),
                   annotation(3, 2, 90, [1, 1, 40, 30]), annotation(4, 4, 1, [1, 1, 10, 10])]
    folder, path = write_coco(tmp_path, images, annotations)
    shutil.copyfile(folder / "img1.png", folder / "img3.png")  # image 3 (no objects) is image 1's bytes
    write_split(tmp_path / "split.json", {"train": [1, 2, 3], "val": [4], "test": []}, seed=0)
    built = build_datasets({"name": "coco", "images": str(folder), "annotations": str(path)},
                           {**PREDEFINED, "from_run": str(tmp_path)})
    found, unit, background_first = split_facts(built)
    assert unit == "objects" and not background_first and len(found["train"]) == 3
    by_id = {f.image_id: f for f in found["train"]}
    # labels in category id order: cat (1), dog (3), bird (90); the 60 px wide box clipped to the 48 px image
    assert by_id[1].amounts.tolist() == [1, 1, 0] and by_id[1].boxes[0].tolist() == [0, 0, 48, 10]
    assert (by_id[1].width, by_id[1].height) == (48, 40)
    assert by_id[1].digest == by_id[3].digest == file_digest(folder / "img1.png") != by_id[2].digest
    numbers, points = audit_data(built)
    assert numbers["splits"]["train"]["duplicates"]["examples"] == [[1, 3]]
    assert numbers["splits"]["train"]["touching_edge"] == 1
    # What the reader left out while loading: the 60 px box clipped to the 48 px image.
    assert numbers["left_out"] == {"crowd regions": 0, "clipped boxes": 1, "dropped boxes": 0, "dropped images": 0}
    assert numbers["leaks"]["images"] == 0 and numbers["splits"]["val"]["objects"] == 1
    assert points["train"]["boxes"].shape == (3, 2) and points["train"]["images"].tolist() == [[48, 40]] * 3


def test_only_files_of_a_shared_size_are_hashed_and_nothing_is_cached(tmp_path):
    files = {name: tmp_path / name for name in ("a", "b", "copy_of_a", "short")}
    for name, content in (("a", b"x" * 10), ("b", b"y" * 10), ("copy_of_a", b"x" * 10), ("short", b"z" * 5)):
        files[name].write_bytes(content)
    digests = content_digests(list(files.values()))
    assert sorted(path.name for path in digests) == ["a", "b", "copy_of_a"]  # "short": no other file has 5 bytes
    assert digests[files["a"]] == digests[files["copy_of_a"]] != digests[files["b"]]
    assert list(content_digests([files["short"], files["short"]])) == [files["short"]]  # one file listed twice
    files["copy_of_a"].write_bytes(b"w" * 10)
    assert content_digests(list(files.values()))[files["copy_of_a"]] != digests[files["a"]]


def test_shapes_and_segmentation_facts_need_no_files():
    split = {"name": "random", "train": 0.5, "val": 0.5, "test": 0.0, "seed": 0}
    detection = build_datasets(SHAPES, split)
    found, unit, _ = split_facts(detection)
    assert unit == "objects" and [len(found[s]) for s in ("train", "val", "test")] == [3, 3, 0]
    first = detection.train.indices[0]
    target = detection.train.dataset[first][1]
    assert found["train"][0].boxes.tolist() == target["boxes"].tolist()
    assert len({f.digest for f in found["train"] + found["val"]}) == 6  # every drawn image differs
    segmentation = build_segmentation_datasets(SHAPES, split)
    pixels, unit, background_first = split_facts(segmentation)
    assert unit == "pixels" and background_first
    dataset = segmentation.train.dataset
    assert pixels["train"][0].amounts.tolist() == dataset.class_pixels(segmentation.train.indices[0]).tolist()
    assert pixels["train"][0].amounts.sum() == 32 * 32 and len(pixels["train"][0].boxes) == 0


def test_the_figure_holds_the_class_counts_the_boxes_and_the_image_sizes():
    splits = {"train": TRAIN, "val": VAL, "test": []}
    numbers, points = audit(splits, CLASSES), figure_points(splits)
    fig = audit_figure(numbers, points)
    bars, scatter, sizes = fig.axes
    widths = [patch.get_width() for patch in bars.patches if isinstance(patch, Rectangle)]
    assert widths == [13, 1, 0, 0, 1, 1, 0, 0, 0]  # train: cat, dog, bird; then val; then test
    assert [label.get_text() for label in bars.get_yticklabels()] == list(CLASSES)
    clouds = [c for c in scatter.collections if isinstance(c, PathCollection)]
    train_points = clouds[0].get_offsets()
    assert len(train_points) == 14 and sorted(train_points[:, 0])[-1] == pytest.approx(96)
    assert [p.get_height() for p in sizes.patches] == [6, 1]  # 100x80 six images, 200x100 one
    assert [t.get_text() for t in sizes.get_xticklabels()] == ["100x80", "200x100"]


def test_json_and_png_are_written_with_the_numbers(tmp_path):
    splits = {"train": TRAIN, "val": VAL, "test": []}
    numbers = audit(splits, CLASSES)
    paths = write_audit(tmp_path, numbers, figure_points(splits))
    assert [p.name for p in paths] == ["data_audit.json", "data_audit.png"] and all(p.is_file() for p in paths)
    saved = json.loads(paths[0].read_text())
    assert saved["splits"]["train"]["imbalance_ratio"] == 13.0 and saved["leaks"]["pairs"] == {"train/val": 1}
    assert saved["thresholds"]["imbalance_ratio"] == IMBALANCE_RATIO and saved["suggestions"] == numbers["suggestions"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data_audit.json", "data_audit.png"]  # no leftovers


def test_what_the_voc_reader_left_out_reaches_the_audit(tmp_path):
    root = small_voc(tmp_path / "small")
    assert VocDataset(str(root)).left_out == {"difficult": 2, "clipped boxes": 0, "dropped boxes": 0,
                                              "dropped images": 1}  # 2008_000003: its only object is difficult
    parts = write_voc(tmp_path / "parts", {"b": voc_xml([("nut", 3, 3, 10, 10, 0), ("bolt", 60, 60, 90, 70, 0)]),
                                           "c": voc_xml([("nut", 3, 3, 10, 10, 0)]),
                                           "a": voc_xml([("bolt", 10, 8, 8, 20, 0)])})
    data = {"name": "voc", "root": str(parts), "image_set": None, "classes": ["bolt", "nut"]}
    built = build_datasets(data, {"name": "random", "train": 0.5, "val": 0.5, "test": 0.0, "seed": 0})
    numbers, _ = audit_data(built)
    assert numbers["left_out"] == {"difficult": 0, "clipped boxes": 1, "dropped boxes": 1, "dropped images": 1}
    assert sum(numbers["splits"][s]["touching_edge"] for s in ("train", "val")) == 1  # the clipped box

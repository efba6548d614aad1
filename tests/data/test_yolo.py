"""data=yolo: Ultralytics' data.yaml and label files read into the COCO reader's records, their quirks, the yaml's
own split, and tiny training runs on them."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY
from in_process import train
from losslab import compose_config
from losslab.config.validation import validate
from losslab.data.coco import CocoDataset
from losslab.data.datasets import build_datasets
from losslab.data.segmentation import build_segmentation_datasets
from losslab.data.split import check_split_options
from losslab.data.yolo import YoloDataset
from losslab.data.yolo_layout import label_path
from losslab.errors import LosslabError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

WIDTH, HEIGHT = 48, 40
NAMES = ["cat", "dog", "bird"]
PREDEFINED = {"name": "predefined", "files": None, "from_run": None, "seed": 0}
RANDOM = {"name": "random", "train": 0.5, "val": 0.25, "test": 0.25, "seed": 0}


def write_image(path, width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def write_yolo(root, splits: dict[str, dict[str, str | None]], names=NAMES, header: str = "path: .\n",
               entries: dict[str, str] | None = None):
    """A YOLO dataset under `root`: images/<split>/<name> and, unless its text is None, labels/<split>/<stem>.txt;
    data.yaml names each split's folder (or `entries`' value). Returns the yaml's path."""
    for split, images in splits.items():
        for number, (name, labels) in enumerate(images.items()):
            image = root / "images" / split / name
            write_image(image, seed=number)
            if labels is not None:
                label_path(image).parent.mkdir(parents=True, exist_ok=True)
                label_path(image).write_text(labels)
    entries = entries or {split: f"images/{split}" for split in splits}
    body = header + "".join(f"{split}: {entry}\n" for split, entry in entries.items())
    (root / "data.yaml").write_text(body + f"names: {json.dumps(names)}\n")
    return root / "data.yaml"


def loaded(path) -> YoloDataset:
    return YoloDataset(str(path))


def test_boxes_negatives_and_empty_lines_become_torchvision_targets(tmp_path):
    path = write_yolo(tmp_path, {"train": {"a.png": "0 0.5 0.5 0.25 0.5\n\n   \n2 0.25 0.25 0.5 0.5\n",
                                           "b.png": "", "c.png": None},
                                 "val": {"d.png": "1 0.75 0.5 0.5 1\n"}})
    dataset = loaded(path)
    assert dataset.classes == ("cat", "dog", "bird") and dataset.category_ids == [0, 1, 2]
    assert dataset.image_ids == ["images/train/a.png", "images/train/b.png", "images/train/c.png", "images/val/d.png"]
    assert not dataset.has_masks
    image, target = dataset[0]
    assert image.shape == (3, HEIGHT, WIDTH) and target["image_id"] == 0
    expected = np.asarray(Image.open(tmp_path / "images/train/a.png"), dtype=np.float32) / 255
    assert torch.allclose(image, torch.from_numpy(expected).permute(2, 0, 1))
    assert target["boxes"].tolist() == [[18, 10, 30, 30], [0, 0, 24, 20]] and target["boxes"].dtype == torch.float32
    assert target["labels"].tolist() == [1, 3] and target["labels"].dtype == torch.int64
    assert dataset[1][1]["boxes"].shape == (0, 4) and dataset[2][1]["labels"].tolist() == []  # negatives, kept
    assert dataset[3][1]["boxes"].tolist() == [[24, 0, 48, 40]]
    assert dataset.own_split() == {"train": dataset.image_ids[:3], "val": ["images/val/d.png"], "test": []}


def test_names_as_a_mapping_or_nc_alone_and_their_errors(tmp_path):
    splits = {"train": {"a.png": "1 0.5 0.5 0.5 0.5\n"}}
    as_list = loaded(write_yolo(tmp_path / "list", splits))
    as_mapping = loaded(write_yolo(tmp_path / "map", splits, names={"1": "dog", "0": "cat", "2": "bird"}))
    assert as_list.classes == as_mapping.classes == ("cat", "dog", "bird")
    assert as_mapping.records[0].labels.tolist() == [2]
    counted = write_yolo(tmp_path / "nc", splits, header="path: .\nnc: 3\n")
    counted.write_text(counted.read_text().replace(f"names: {json.dumps(NAMES)}\n", ""))
    assert loaded(counted).classes == ("class_0", "class_1", "class_2")
    with pytest.raises(LosslabError, match=r"names has the indices 0, 2; expected exactly 0..1"):
        loaded(write_yolo(tmp_path / "gap", splits, names={"0": "cat", "2": "dog"}))
    with pytest.raises(LosslabError, match=r"nc: 2 but names gives 3 classes"):
        loaded(write_yolo(tmp_path / "nc2", splits, header="path: .\nnc: 2\n"))


def test_path_defaults_to_the_yaml_folder_and_relative_paths_are_from_it(tmp_path):
    write_yolo(tmp_path / "data", {"train": {"a.png": "0 0.5 0.5 0.5 0.5\n"}, "val": {"b.png": None}})
    elsewhere = tmp_path / "configs" / "pets.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(f"path: ../data\ntrain: images/train\nval: images/val\nnames: {NAMES}\n")
    assert loaded(elsewhere).image_ids == ["images/train/a.png", "images/val/b.png"]
    (tmp_path / "data" / "data.yaml").write_text(f"train: images/train\nval: ../images/val\nnames: {NAMES}\n")
    assert loaded(tmp_path / "data" / "data.yaml").own_split()["val"] == ["images/val/b.png"]  # Roboflow's ../
    (tmp_path / "data" / "data.yaml").write_text(f"train: images/training\nval: images/val\nnames: {NAMES}\n")
    with pytest.raises(LosslabError, match=r"train: images/training does not exist"):
        loaded(tmp_path / "data" / "data.yaml")


def test_list_files_and_lists_of_folders_name_the_splits(tmp_path):
    path = write_yolo(tmp_path, {"a": {"1.png": "0 0.5 0.5 0.5 0.5\n"}, "b": {"2.png": "1 0.5 0.5 0.5 0.5\n"},
                                 "c": {"3.png": None, "4.jpg": "2 0.5 0.5 0.5 0.5\n"}},
                      entries={"train": "[images/a, images/b]", "val": "val.txt", "test": "lists/test.txt"})
    (tmp_path / "val.txt").write_text("./images/c/3.png\nimages/c/4.jpg\n\n")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "test.txt").write_text(f"{tmp_path / 'images/c/4.jpg'}\n")
    dataset = loaded(path)
    assert len(dataset) == 4  # 4.jpg is in val and test: one image
    split = {name: ids for name, ids in dataset.split_of.items()}
    assert split == {"train": ["images/a/1.png", "images/b/2.png"], "val": ["images/c/3.png", "images/c/4.jpg"],
                     "test": ["images/c/4.jpg"]}
    with pytest.raises(LosslabError, match=r"data.yaml=.*: 1 image\(s\) are in two splits .*images/c/4.jpg"):
        dataset.own_split()
    pooled = build_datasets({"name": "yolo", "yaml": str(path)}, RANDOM)
    assert sorted(sum(pooled.split_ids.values(), [])) == sorted(dataset.image_ids)
    (tmp_path / "lists" / "test.txt").write_text("../images/c/5.png\n")
    with pytest.raises(LosslabError, match=r"1 of the 1 image that .*test.txt lists do not exist: .*images/c/5.png"):
        loaded(path)


def test_split_predefined_is_the_yamls_folders_and_random_pools_them(tmp_path):
    images = {f"{i}.png": f"{i % 3} 0.5 0.5 0.5 0.5\n" for i in range(4)}
    path = write_yolo(tmp_path, {"train": images, "val": {"v.png": None}, "test": {"t.png": "0 0.5 0.5 0.2 0.2\n"}})
    cfg = compose_config(["data=yolo", f"data.yaml={path}"])
    assert cfg.split.name == "predefined"  # this format's default
    built = build_datasets(dict(cfg.data), dict(cfg.split))
    assert built.split_ids == {"train": [f"images/train/{i}.png" for i in range(4)], "val": ["images/val/v.png"],
                               "test": ["images/test/t.png"]}
    assert compose_config(["data=yolo", f"data.yaml={path}", "split=random"]).split.name == "random"
    pooled = build_datasets({"name": "yolo", "yaml": str(path)}, RANDOM)
    assert sorted(sum(pooled.split_ids.values(), [])) == sorted(built.split_ids["train"] + ["images/test/t.png",
                                                                                            "images/val/v.png"])
    assert [len(pooled.split_ids[name]) for name in ("train", "val", "test")] == [3, 2, 1]
    without_val = write_yolo(tmp_path / "no_val", {"train": images})
    with pytest.raises(LosslabError, match=r"gives no val images; split=predefined uses .* split=random"):
        build_datasets({"name": "yolo", "yaml": str(without_val)}, PREDEFINED)
    assert len(build_datasets({"name": "yolo", "yaml": str(without_val)}, RANDOM).train) == 2


def test_data_yolo_needs_its_yaml_and_its_predefined_split_nothing_more():
    with pytest.raises(LosslabError, match=r"data=yolo needs data.yaml=DATA.yaml; not set: data.yaml"):
        validate(compose_config(["data=yolo", "trainer.device=cpu"]))
    check_split_options(PREDEFINED, own_split=True)  # the yaml's own split
    with pytest.raises(LosslabError, match=r"split.files.train=FILE .* or split.from_run=RUN_DIR .*not neither"):
        check_split_options(PREDEFINED)
    with pytest.raises(LosslabError, match="not both"):
        check_split_options({**PREDEFINED, "files": {"train": "a", "val": "b"}, "from_run": "run"}, own_split=True)


def test_polygons_become_instance_masks_and_boxes_beside_them_their_box(tmp_path, caplog):
    square = "0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75"  # pixels 12..36 x 10..30
    path = write_yolo(tmp_path, {"train": {"a.png": f"{square}\n1 0.125 0.125 0.25 0.25\n", "b.png": None},
                                 "val": {"c.png": "2 0 0 0.5 0 0 0.5\n"}})
    with caplog.at_level(logging.WARNING, logger="losslab.data.yolo"):
        dataset = loaded(path)
    assert dataset.has_masks
    _, target = dataset[0]
    assert target["boxes"].tolist() == [[12, 10, 36, 30], [0, 0, 12, 10]]
    assert target["masks"].shape == (2, HEIGHT, WIDTH) and target["masks"].dtype == torch.uint8
    assert target["masks"][0, 10:30, 12:36].all() and target["masks"][0].sum() == 24 * 20
    assert target["masks"][1, :10, :12].all() and target["masks"][1].sum() == 120  # its box as mask
    assert dataset[1][1]["masks"].shape == (0, HEIGHT, WIDTH)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "1 object(s) are boxes (`class cx cy w h`) while others are polygons; their box is used as their mask"]
    semantic = build_segmentation_datasets({"name": "yolo", "yaml": str(path)}, PREDEFINED)
    assert semantic.classes == ("background", "cat", "dog", "bird")
    mask = semantic.train[0][1]["mask"]
    assert mask[10:30, 12:36].eq(1).all() and mask[:10, :12].eq(2).all() and mask.eq(0).sum() == 40 * 48 - 480 - 120
    triangle = semantic.val[0][1]["mask"]
    assert triangle[0, :20].eq(3).all() and triangle[39].eq(0).all()


@pytest.mark.parametrize("kind", ["boxes", "polygons"])
def test_the_same_objects_as_a_coco_file_give_the_same_records(tmp_path, kind):
    """Objects in pixels written both ways, as a converter would: the same boxes, labels, sizes (and masks)."""
    objects = {"a.png": [(0, [4, 6, 20, 10]), (2, [30, 2, 16, 30])], "b.png": [], "c.png": [(1, [0, 0, 48, 40])]}
    coco = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in enumerate(NAMES, 1)]}
    lines = {}
    for number, (name, boxes) in enumerate(objects.items(), start=1):
        coco["images"].append({"id": number, "file_name": name, "width": WIDTH, "height": HEIGHT})
        lines[name] = ""
        for category, (x, y, w, h) in boxes:
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": number, "bbox": [x, y, w, h],
                                        "category_id": category + 1, "iscrowd": 0,
                                        "segmentation": [polygon] if kind == "polygons" else []})
            values = polygon if kind == "polygons" else [x + w / 2, y + h / 2, w, h]
            fractions = [v / side for v, side in zip(values, [WIDTH, HEIGHT] * 4, strict=False)]
            lines[name] += f"{category} {' '.join(map(repr, fractions))}\n"
    path = write_yolo(tmp_path, {"train": lines})
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    yolo, reference = loaded(path), CocoDataset(str(tmp_path / "images" / "train"), str(tmp_path / "instances.json"))
    assert yolo.classes == reference.classes and len(yolo) == len(reference) == 3
    assert yolo.has_masks == reference.has_masks == (kind == "polygons")
    for mine, theirs in zip(yolo.records, reference.records, strict=True):
        assert mine.file == theirs.file  # path, size, orientation
        np.testing.assert_allclose(mine.boxes, theirs.boxes, atol=1e-4)
        assert mine.labels.tolist() == theirs.labels.tolist()
    for index in range(3 if kind == "polygons" else 0):
        assert torch.equal(yolo.masks(index), reference.masks(index))


def test_coordinates_slightly_outside_are_clipped_with_one_warning(tmp_path, caplog):
    path = write_yolo(tmp_path, {"train": {"a.png": "0 0.5 0.5 1.005 1\n1 -0.004 0.5 0.5 0.5\n2 0.5 0.5 0.5 0.5\n"}})
    with caplog.at_level(logging.WARNING, logger="losslab.data.yolo"):
        dataset = loaded(path)
    assert dataset.records[0].boxes.tolist() == [[0, 0, 48, 40], [0, 10, 12, 30], [12, 10, 36, 30]]
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "2 label line(s) have coordinates outside [0, 1] by at most 0.01; clipped to the image"]


@pytest.mark.parametrize(("lines", "message"), [
    ("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n",
     r"1 class indices outside the data.yaml's 3 classes \(0..2\): .*; .*a.txt:2 \(class 3\)"),
    ("0 0.5 0.5 0.2 0.2\n\n1 0.5 0.5 20 0.2\n", r"1 coordinates outside \[0, 1\] by more than 0.01: .*a.txt:3 "
                                                 r"\(0.2..20\)"),
    ("0 0.5 0.5 0.2\n", r"1 label lines that cannot be read: .*; .*a.txt:1 \('0 0.5 0.5 0.2'\)"),
    ("cat 0.5 0.5 0.2 0.2\n", r"a.txt:1 \('cat 0.5 0.5 0.2 0.2'\)"),
    ("0.5 0.5 0.5 0.2 0.2\n", r"cannot be read: .*a whole class index.*a.txt:1"),
    ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.9\n", r"cannot be read: .*a.txt:1"),  # an odd number of polygon coordinates
    ("0 nan 0.5 0.2 0.2\n", r"cannot be read: .*a.txt:1"),
])
def test_bad_label_lines_are_one_error_naming_file_and_line(tmp_path, lines, message):
    path = write_yolo(tmp_path, {"train": {"a.png": lines}})
    with pytest.raises(LosslabError, match=message):
        loaded(path)


def test_label_files_without_an_image_and_degenerate_boxes_are_counted_once(tmp_path, caplog):
    labels = {"a.png": "0 0.5 0.5 0 0.5\n1 0.5 0.5 0.5 0.5\n", "b.png": "0 0.5 0.5 0 0\n"}
    path = write_yolo(tmp_path, {"train": labels})
    (tmp_path / "labels" / "train" / "gone.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "labels" / "train" / "gone2.txt").write_text("")
    with caplog.at_level(logging.WARNING, logger="losslab.data.yolo"):
        dataset = loaded(path)
    assert dataset.image_ids == ["images/train/a.png"]  # b's only object is degenerate: not a negative, dropped
    messages = [r.getMessage().split(": ", 1)[1] for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("dropped 2 box(es) with zero or negative width or height")
    assert "a.txt:1" in messages[0] and "b.txt:1" in messages[0]
    assert messages[1].startswith("2 label file(s) have no image and are not read") and "gone.txt" in messages[1]


def exif_jpeg(path) -> None:
    """A stored 48x40 JPEG, left half black, whose EXIF says: turn 90 degrees clockwise to view (6)."""
    pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixels[:, WIDTH // 2:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_and_labels_are_fractions_of_the_turned_image(tmp_path):
    path = write_yolo(tmp_path, {"train": {}})
    exif_jpeg(tmp_path / "images" / "train" / "turned.jpg")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "turned.txt").write_text("0 0.5 0.25 1 0.5\n")  # the top half as viewed
    image, target = loaded(path)[0]
    assert image.shape == (3, WIDTH, HEIGHT)  # viewed: 40 wide, 48 high
    assert image[:, : WIDTH // 2 - 2].mean() < 0.05 and image[:, WIDTH // 2 + 2:].mean() > 0.95  # top black
    assert target["boxes"].tolist() == [[0, 0, HEIGHT, WIDTH // 2]]


def training_yolo(tmp_path) -> str:
    square = "0.2 0.2 0.7 0.2 0.7 0.7 0.2 0.7"
    images = {f"{i}.png": f"{i % 2} {square}\n" for i in range(4)}
    return str(write_yolo(tmp_path, {"train": images, "val": {"v.png": f"1 {square}\n"}}, names=["cat", "dog"]))


@pytest.mark.parametrize("extra", [["model=faster_rcnn", "eval.every=1"], ["model=mask_rcnn"], ["task=segmentation"]],
                         ids=["detection", "mask_rcnn", "segmentation"])
def test_train_runs_a_tiny_epoch_on_yolo_data(tmp_path, extra):
    tiny = [o for o in TINY if not o.startswith(("data.num_images", "data.image_size", "data.max_objects"))]
    if "task=segmentation" in extra:
        tiny = [o for o in tiny if not o.startswith("model.box_batch_size")]
    result = train("data=yolo", f"data.yaml={training_yolo(tmp_path)}", "data.num_workers=0", *tiny, *extra,
                   "trainer.checkpoints=false", f"run_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["train"] == [f"images/train/{i}.png" for i in range(4)] and split["val"] == ["images/val/v.png"]
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header, values = rows[0].split(","), rows[1].split(",")
    assert len(rows) == 2 and np.isfinite(float(values[header.index("val/loss")]))
    if "eval.every=1" in extra:
        assert 0 <= float(values[header.index("val/mAP")]) <= 1

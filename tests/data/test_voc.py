"""data=voc: Pascal VOC folders read into torchvision targets, their quirks, and clear errors for bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from losslab import compose_config, run
from losslab.data.datasets import build_datasets
from losslab.data.voc import VOC_CLASSES, VocDataset
from losslab.errors import LosslabError

SIZE = 64


def voc_xml(objects: list[tuple], size: tuple[int, int] | None = (SIZE, SIZE)) -> str:
    """A VOC annotation: objects as (name, xmin, ymin, xmax, ymax, difficult), 1-based inclusive pixels."""
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    parts = [f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
             f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
             for name, x0, y0, x1, y1, difficult in objects]
    return f"<annotation><filename>x.jpg</filename>{size_xml}{''.join(parts)}</annotation>"


def write_voc(root, annotations: dict[str, str], image_sets: dict[str, list[str]] | None = None,
              extension: str = ".jpg"):
    """A VOC folder: one image per annotation (stem -> XML text) and the ImageSets/Main lists given."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i, (stem, xml) in enumerate(annotations.items()):
        pixels = np.random.default_rng(i).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{stem}{extension}")
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
    for name, stems in (image_sets or {}).items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{stem}\n" for stem in stems))
    return root


def small_voc(root):
    return write_voc(root, {
        "2008_000001": voc_xml([("dog", 1, 1, 20, 30, 0), ("person", 30, 10, 64, 64, 1)]),
        "2008_000002": voc_xml([("cat", 10, 10, 40, 40, 0), ("cat", 5, 5, 5, 9, 0)]),  # one box 1 pixel wide
        "2008_000003": voc_xml([("person", 2, 2, 20, 20, 1)]),  # only a difficult object
        "2008_000004": voc_xml([]),  # no objects
    }, {"trainval": ["2008_000001", "2008_000002", "2008_000003", "2008_000004"], "train": ["2008_000001"]})


def test_boxes_become_pixel_edges_and_difficult_objects_are_left_out(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = VocDataset(str(small_voc(tmp_path)))
    assert dataset.classes == VOC_CLASSES and dataset.category_ids == list(range(1, 21)) and not dataset.has_masks
    assert dataset.image_ids == ["2008_000001", "2008_000002", "2008_000004"]  # 3: its only object is difficult
    image, target = dataset[0]
    assert image.shape == (3, SIZE, SIZE) and "masks" not in target and isinstance(target["image_id"], int)
    assert target["boxes"].tolist() == [[0, 0, 20, 30]] and target["labels"].tolist() == [VOC_CLASSES.index("dog") + 1]
    assert dataset[1][1]["boxes"].tolist() == [[9, 9, 40, 40], [4, 4, 5, 9]]  # a 1-pixel-wide box is 1 wide
    assert dataset[2][1]["boxes"].shape == (0, 4)
    assert dataset.image_labels() == {"2008_000001": {12}, "2008_000002": {8}, "2008_000004": set()}
    assert not caplog.records
    kept = VocDataset(str(tmp_path), keep_difficult=True)
    assert kept.image_ids == ["2008_000001", "2008_000002", "2008_000003", "2008_000004"]
    assert kept[0][1]["boxes"].tolist() == [[0, 0, 20, 30], [29, 9, 64, 64]]
    assert VocDataset(str(tmp_path), image_set="train").image_ids == ["2008_000001"]


def test_custom_classes_lists_without_image_sets_and_png_images(tmp_path, caplog):
    root = write_voc(tmp_path, {"b": voc_xml([("nut", 3, 3, 10, 10, 0), ("bolt", 60, 60, 90, 70, 0)], size=None),
                                "a": voc_xml([("bolt", 10, 8, 8, 20, 0)])}, extension=".png")
    with caplog.at_level(logging.WARNING):
        dataset = VocDataset(str(root), image_set=None, classes=["bolt", "nut"])
    assert dataset.image_ids == ["b"]  # every XML, sorted; a's only box has no width, so a is not a negative
    assert dataset[0][1]["boxes"].tolist() == [[2, 2, 10, 10], [59, 59, 64, 64]]  # clipped to the image
    assert dataset[0][1]["labels"].tolist() == [2, 1]
    assert dataset[0][1]["file_name"] == "b.png"  # what evaluation's files name the image by
    assert len(caplog.records) == 1 and "dropped 1 box(es)" in caplog.records[0].getMessage()
    assert "a.xml object 1" in caplog.records[0].getMessage()


@pytest.mark.parametrize(("change", "message"), [
    (lambda root: None, "data.root=.*nowhere: does not exist"),
    (lambda root: (root / "Annotations" / "2008_000002.xml").write_text("<annotation><object>\n<name>cat</name>"),
     r"2008_000002.xml is not valid XML \(no element found: line 2, column 17\)"),
    (lambda root: (root / "Annotations" / "2008_000001.xml").write_text(voc_xml([("unicorn", 1, 1, 5, 5, 0)])),
     r"not in data.classes: 'unicorn' \(first in .*2008_000001.xml\)"),
    (lambda root: (root / "JPEGImages" / "2008_000004.jpg").unlink(), "1 of the 4 listed images have no image file"),
    (lambda root: (root / "Annotations" / "2008_000004.xml").unlink(), "have no annotation file in .*2008_000004.xml"),
    (lambda root: (root / "JPEGImages" / "2008_000004.jpg").write_text("text"), "cannot be read as images"),
    (lambda root: (root / "ImageSets" / "Main" / "trainval.txt").write_text("../../secret\n"), "not plain file names"),
    (lambda root: (root / "Annotations" / "2008_000001.xml").write_text(voc_xml([("dog", 1, 1, 5, 5, 0)], (9, 9))),
     r"2008_000001.jpg \(annotations 9x9, file 64x64\)"),
])
def test_bad_folders_are_refused_with_the_file_and_the_problem(tmp_path, change, message):
    root = small_voc(tmp_path / "voc")
    change(root)
    with pytest.raises(LosslabError, match=message):
        VocDataset(str(tmp_path / "nowhere") if "nowhere" in message else str(root))


def test_an_unknown_class_suggests_the_classes_the_files_name(tmp_path):
    root = small_voc(tmp_path / "voc")
    (root / "Annotations" / "2008_000001.xml").write_text(voc_xml([("unicorn", 1, 1, 5, 5, 0)]))
    with pytest.raises(LosslabError) as refused:
        VocDataset(str(root), classes=["cat", "dog"])
    assert "The files name 3 class(es): set data.classes to them (data.classes=[cat,person,unicorn])" \
        in str(refused.value)
    with pytest.raises(LosslabError) as refused:
        VocDataset(str(root))  # data.classes left at the 20 VOC classes: those are not what it suggests
    assert "(data.classes=[cat,person,unicorn])" in str(refused.value) and "aeroplane" not in str(refused.value)


def test_image_files_linked_from_outside_the_voc_folder_are_refused_unless_allowed(tmp_path):
    root = small_voc(tmp_path / "voc")
    image = root / "JPEGImages" / "2008_000002.jpg"
    image.rename(tmp_path / "elsewhere.jpg")
    image.symlink_to(tmp_path / "elsewhere.jpg")
    message = (f"1 image file\\(s\\) that the VOC folder {root} lists are symbolic links .* leading outside {root}: "
               f"JPEGImages/2008_000002.jpg -> {tmp_path / 'elsewhere.jpg'}")
    with pytest.raises(LosslabError, match=message):
        VocDataset(str(root))
    assert len(VocDataset(str(root), follow_outside_links=True)) == 3


def test_a_missing_image_set_lists_the_ones_there(tmp_path):
    root = small_voc(tmp_path)
    with pytest.raises(LosslabError, match=r"data.image_set=val: .*val.txt does not exist. Expected one of the "
                                           r"lists there \(train, trainval\).*data.image_set=null"):
        VocDataset(str(root), image_set="val")


def voc_overrides(root, *extra: str) -> list[str]:
    tiny = [o for o in TINY if not o.startswith(("data.num_images", "data.image_size", "data.max_objects"))]
    return ["data=voc", f"data.root={root}", "data.num_workers=0", *tiny, *extra]


def training_voc(root):
    annotations = {f"img{i}": voc_xml([(["cat", "dog"][i % 2], 5 + i, 8, 30 + i, 40, 0)]) for i in range(8)}
    return write_voc(root, annotations, {"trainval": list(annotations), "train": [f"img{i}" for i in range(5)],
                                         "val": ["img5", "img6"]})


def test_a_run_trains_faster_rcnn_on_voc_and_refuses_mask_rcnn(tmp_path):
    root = training_voc(tmp_path / "voc")
    result = run(compose_config(voc_overrides(root, "trainer.checkpoints=false", f"run_dir={tmp_path / 'run'}")))
    assert result.status == "completed" and np.isfinite(result.history[0]["val/loss"])
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert sorted(split["train"] + split["val"] + split["test"]) == [f"img{i}" for i in range(8)]
    with pytest.raises(LosslabError, match="model=mask_rcnn learns instance masks, but data=voc has none"):
        run(compose_config(voc_overrides(root, "model=mask_rcnn", f"run_dir={tmp_path / 'masks'}")))
    assert not (tmp_path / "masks" / "split.json").exists()


def test_predefined_split_reads_one_image_list_per_split(tmp_path):
    root = training_voc(tmp_path)
    data = {"name": "voc", "root": str(root), "image_set": "trainval", "keep_difficult": False,
            "classes": list(VOC_CLASSES)}
    files = {"train": "train", "val": str(root / "ImageSets" / "Main" / "val.txt"), "test": None}
    built = build_datasets(data, {"name": "predefined", "files": files, "from_run": None, "seed": 0})
    assert built.split_ids == {"train": [f"img{i}" for i in range(5)], "val": ["img5", "img6"], "test": []}
    assert not built.has_masks and len(built.train) == 5
    with pytest.raises(LosslabError, match="split.files.test=nope: data.image_set=nope: .*nope.txt does not exist"):
        build_datasets(data, {"name": "predefined", "files": {**files, "test": "nope"}, "from_run": None, "seed": 0})

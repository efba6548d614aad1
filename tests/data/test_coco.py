"""data=coco: COCO instances files read into torchvision targets, their quirks, and clear errors for bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from conftest import TINY
from in_process import train
from losslab import compose_config, run
from losslab.data.coco import CocoDataset
from losslab.data.datasets import build_datasets
from losslab.data.rle import compressed_counts
from losslab.errors import LosslabError

# pycocotools 2.0 predates numpy 2's copy keyword and says so on every decode; harmless, and hidden outside tests.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

WIDTH, HEIGHT = 48, 40
CATEGORIES = [{"id": 90, "name": "bird"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}]  # ids with gaps


def rectangle(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    """A COCO polygon around the pixels x0..x1-1, y0..y1-1."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def rectangle_rle(x0: int, y0: int, x1: int, y1: int, compressed: bool = True) -> dict:
    """A COCO RLE of the pixels x0..x1-1, y0..y1-1: compressed (a string) or not (run lengths, column-major)."""
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8, order="F")
    mask[y0:y1, x0:x1] = 1
    if compressed:
        return {"size": [HEIGHT, WIDTH], "counts": mask_utils.encode(mask)["counts"].decode("ascii")}
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    return {"size": [HEIGHT, WIDTH], "counts": np.diff([0, *changes, flat.size]).tolist()}  # starts with zeros


def write_image(path, width: int = WIDTH, height: int = HEIGHT, mode: str = "RGB", seed: int = 0, **save) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, **save)


def write_coco(tmp_path, images: list[dict], annotations: list[dict], categories=CATEGORIES, name="instances.json",
               write_files: bool = True):
    """An image folder with a file for every image entry, and the annotation file; returns both paths."""
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    if write_files:
        for image in images:
            write_image(folder / image["file_name"], image["width"], image["height"], seed=image["id"])
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return folder, path


def image(image_id: int, file_name: str | None = None, width: int = WIDTH, height: int = HEIGHT) -> dict:
    return {"id": image_id, "file_name": file_name or f"img{image_id}.png", "width": width, "height": height}


def annotation(ann_id: int, image_id: int, category_id: int, bbox, **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": 0, **extra}


def quirky_coco(tmp_path):
    """Seven images covering every quirk: polygons, both RLE kinds, a crowd, a degenerate and a clipped box,
    an object without segmentation, an image without annotations and one in a subfolder."""
    images = [image(i) for i in range(1, 7)] + [image(7, "sub/img7.jpg")]
    annotations = [
        annotation(1, 1, 1, [2, 2, 10, 8], segmentation=rectangle(2, 2, 12, 10)),
        annotation(2, 1, 90, [20, 10, 10, 10], segmentation=rectangle_rle(20, 10, 30, 20)),
        annotation(3, 2, 3, [40, 30, 20, 20], segmentation=rectangle(40, 30, 48, 40)),  # past the edge
        annotation(4, 2, 1, [5, 5, 0, 6], segmentation=rectangle(5, 5, 6, 11)),  # zero width
        annotation(5, 3, 3, [1, 1, 5, 5], segmentation=rectangle_rle(1, 1, 6, 6, compressed=False)),
        annotation(6, 4, 1, [0, 0, 20, 20], segmentation=rectangle_rle(0, 0, 20, 20), iscrowd=1),
        annotation(7, 5, 90, [10, 10, 8, 8]),  # no segmentation
        annotation(8, 7, 3, [4, 4, 6, 6], segmentation=rectangle(4, 4, 10, 10)),
    ]
    return write_coco(tmp_path, images, annotations)


def test_items_follow_torchvision_convention_with_contiguous_labels(tmp_path):
    dataset = CocoDataset(*map(str, quirky_coco(tmp_path)))
    assert dataset.classes == ("cat", "dog", "bird")  # sorted by category id 1, 3, 90
    assert dataset.category_ids == [1, 3, 90]
    assert dataset.has_masks
    assert dataset.image_ids == [1, 2, 3, 5, 6, 7]  # image 4 holds only a crowd region
    image, target = dataset[0]
    assert image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    expected = np.asarray(Image.open(tmp_path / "images" / "img1.png"), dtype=np.float32) / 255
    assert torch.allclose(image, torch.from_numpy(expected).permute(2, 0, 1))
    assert target["image_id"] == 1
    assert target["labels"].tolist() == [1, 3] and target["labels"].dtype == torch.int64
    assert target["boxes"].tolist() == [[2, 2, 12, 10], [20, 10, 30, 20]] and target["boxes"].dtype == torch.float32
    assert target["masks"].shape == (2, HEIGHT, WIDTH) and target["masks"].dtype == torch.uint8
    assert target["masks"][0, 2:10, 2:12].all() and target["masks"][0].sum() == 80  # polygon
    assert target["masks"][1, 10:20, 20:30].all() and target["masks"][1].sum() == 100  # compressed RLE
    assert dataset.image_labels() == {1: {1, 3}, 2: {2}, 3: {2}, 5: {3}, 6: set(), 7: {2}}
    assert dataset.file_names[-1] == "sub/img7.jpg"


def test_rle_box_masks_crowds_clipping_and_negatives(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="losslab.data.coco"):
        dataset = CocoDataset(*map(str, quirky_coco(tmp_path)))
    by_id = {image_id: dataset[i][1] for i, image_id in enumerate(dataset.image_ids)}
    assert by_id[2]["boxes"].tolist() == [[40, 30, 48, 40]]  # clipped; the zero-width box is gone
    assert by_id[3]["masks"][0, 1:6, 1:6].all() and by_id[3]["masks"].sum() == 25  # uncompressed RLE
    assert by_id[5]["masks"][0, 10:18, 10:18].all() and by_id[5]["masks"].sum() == 64  # its box as mask
    assert len(by_id[6]["boxes"]) == 0 and by_id[6]["boxes"].shape == (0, 4) and by_id[6]["masks"].shape[0] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "dropped 1 box(es) with zero or negative width or height" in warnings[0] and "id 4" in warnings[0]
    assert "1 object(s) have no usable segmentation" in warnings[1]
    without_negatives = CocoDataset(*map(str, quirky_coco(tmp_path)), keep_empty=False)
    assert without_negatives.image_ids == [1, 2, 3, 5, 7]


def test_box_only_annotations_have_no_masks(tmp_path):
    folder, path = write_coco(tmp_path, [image(1)], [annotation(1, 1, 1, [1, 2, 3, 4], segmentation=[])])
    dataset = CocoDataset(str(folder), str(path))
    assert not dataset.has_masks and "masks" not in dataset[0][1]


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_every_image_mode_becomes_three_channels(tmp_path, mode):
    folder, path = write_coco(tmp_path, [image(1, "img.tif")], [], write_files=False)
    if mode == "I;16":
        Image.fromarray(np.full((HEIGHT, WIDTH), 65535, dtype=np.uint16)).save(folder / "img.tif")
    else:
        write_image(folder / "img.tif", mode=mode)
    pixels = CocoDataset(str(folder), str(path))[0][0]
    assert pixels.shape == (3, HEIGHT, WIDTH) and 0 <= pixels.min() <= pixels.max() <= 1
    if mode == "I;16":
        assert torch.all(pixels == 1)


def exif_jpeg(path, orientation: int) -> None:
    """A stored 48x40 JPEG, left half black, whose EXIF says: turn 90 degrees clockwise to view (6)."""
    pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixels[:, WIDTH // 2:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)


def test_exif_orientation_follows_the_size_the_annotations_give(tmp_path):
    folder, _ = write_coco(tmp_path, [], [])
    exif_jpeg(folder / "turned.jpg", orientation=6)
    viewed = write_coco(tmp_path, [image(1, "turned.jpg", HEIGHT, WIDTH)], [], name="viewed.json", write_files=False)[1]
    turned = CocoDataset(str(folder), str(viewed))[0][0]
    assert turned.shape == (3, WIDTH, HEIGHT)
    assert turned[:, : WIDTH // 2 - 2].mean() < 0.05 and turned[:, WIDTH // 2 + 2:].mean() > 0.95  # top black
    stored = write_coco(tmp_path, [image(1, "turned.jpg")], [], name="stored.json", write_files=False)[1]
    assert CocoDataset(str(folder), str(stored))[0][0].shape == (3, HEIGHT, WIDTH)  # annotated as stored
    wrong = write_coco(tmp_path, [image(1, "turned.jpg", 30, 30)], [], name="wrong.json", write_files=False)[1]
    with pytest.raises(LosslabError, match=r"turned.jpg \(annotations 30x30, file 40x48\)"):
        CocoDataset(str(folder), str(wrong))


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_folder_and_file_are_named(tmp_path):
    folder, path = write_coco(tmp_path, [image(1)], [])
    with pytest.raises(LosslabError, match="data.images=.*nowhere: does not exist"):
        CocoDataset(str(tmp_path / "nowhere"), str(path))
    with pytest.raises(LosslabError, match="data.annotations=.*none.json: does not exist; expected a COCO"):
        CocoDataset(str(folder), str(tmp_path / "none.json"))


def test_corrupt_json_says_where(tmp_path):
    folder, path = write_coco(tmp_path, [image(1)], [])
    path.write_text('{\n  "images": [\n    {"id": 1,,}\n  ]\n}\n')
    with pytest.raises(LosslabError, match=r"instances.json is not valid JSON: .* at line 3, column 14"):
        CocoDataset(str(folder), str(path))


@pytest.mark.parametrize(("content", "message"), [
    ({"images": []}, "expected a JSON object with the lists 'images', 'annotations' and 'categories'"),
    ({"images": [{"id": "a", "file_name": "x.png"}], "annotations": [], "categories": CATEGORIES},
     r"each entry of 'images' needs 'id' \(int\).*images\[0\] \(id='a'\)"),
    ({"images": [image(1), image(1)], "annotations": [], "categories": CATEGORIES}, "every image id must be unique"),
    ({"images": [image(1)], "annotations": [annotation(7, 2, 1, [0, 0, 1, 1])], "categories": CATEGORIES},
     "image_id must be the id of an image.*annotation id 7: image_id 2"),
    ({"images": [image(1)], "annotations": [annotation(1, 1, 1, [0, 0, 1])], "categories": CATEGORIES},
     r"a bbox is \[x, y, width, height\]"),
])
def test_malformed_structure_is_refused(tmp_path, content, message):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(content))
    with pytest.raises(LosslabError, match=message):
        CocoDataset(str(tmp_path), str(path))


def test_unknown_category_names_the_annotation_and_category(tmp_path):
    folder, path = write_coco(tmp_path, [image(1)], [annotation(1, 1, 1, [0, 0, 5, 5]),
                                                     annotation(12, 1, 7, [0, 0, 5, 5])])
    with pytest.raises(LosslabError, match=r"category_id must be one of the 'categories' ids \(1, 3, 90\); 1 do not: "
                                           "annotation id 12: category_id 7"):
        CocoDataset(str(folder), str(path))


@pytest.mark.parametrize(("segmentation", "message"), [
    ({"size": [10, 10], "counts": "abc"}, r"annotation id 1: RLE size \[10, 10\] for a 40x48"),
    ([[1, 2, "x", 4, 5, 6]], "annotation id 1: polygon coordinates must be numbers"),
])
def test_unusable_segmentations_are_refused(tmp_path, segmentation, message):
    folder, path = write_coco(tmp_path, [image(1)], [annotation(1, 1, 1, [1, 2, 3, 4], segmentation=segmentation)])
    with pytest.raises(LosslabError, match=message):
        CocoDataset(str(folder), str(path))


def wrong_total(rle: dict, pixels: int) -> dict:
    """`rle` with its last run `pixels` longer (or shorter): counts that no longer cover the image."""
    runs = rle["counts"] if isinstance(rle["counts"], list) else compressed_counts(rle["counts"])
    runs = [*runs[:-1], runs[-1] + pixels]
    if isinstance(rle["counts"], list):
        return {**rle, "counts": runs}
    return {**rle, "counts": mask_utils.frPyObjects({"size": rle["size"], "counts": runs}, *rle["size"])["counts"]
            .decode("ascii")}


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("pixels", [10, -10])
def test_rle_counts_that_do_not_cover_the_image_are_refused_up_front(tmp_path, compressed, pixels):
    good = rectangle_rle(2, 2, 12, 10, compressed=compressed)
    assert sum(good["counts"] if not compressed else compressed_counts(good["counts"])) == HEIGHT * WIDTH
    segmentation = wrong_total(good, pixels)
    folder, path = write_coco(tmp_path, [image(1)], [annotation(1, 1, 1, [2, 2, 10, 8], segmentation=good),
                                                     annotation(7, 1, 1, [2, 2, 10, 8], segmentation=segmentation)])
    with pytest.raises(LosslabError, match=rf"data.annotations={path}: .* 1 do not: annotation id 7: RLE counts cover "
                                           rf"{HEIGHT * WIDTH + pixels} pixels, not the 40x48 = 1920 of its image"):
        CocoDataset(str(folder), str(path))


def test_compressed_rle_counts_are_read_as_pycocotools_writes_them():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = rng.integers(1, 60, 2)
        mask = np.asfortranarray(rng.random((height, width)) < rng.random(), dtype=np.uint8)
        flat = mask.flatten(order="F")
        changes = np.flatnonzero(np.diff(flat)) + 1
        runs = ([0] if flat[0] else []) + np.diff([0, *changes, flat.size]).tolist()  # runs start with zeros
        assert compressed_counts(mask_utils.encode(mask)["counts"].decode("ascii")) == runs


@pytest.mark.parametrize("name", ["_background_", "background", "__background__"])
def test_a_background_category_is_left_out_with_a_warning(tmp_path, caplog, name):
    categories = [{"id": 0, "name": name}, *CATEGORIES]  # labelme's COCO converter writes _background_ first
    annotations = [annotation(1, 1, 1, [2, 2, 10, 8]), annotation(2, 1, 0, [0, 0, 48, 40]),
                   annotation(3, 2, 0, [0, 0, 48, 40])]
    folder, path = write_coco(tmp_path, [image(1), image(2)], annotations, categories)
    with caplog.at_level(logging.WARNING):
        dataset = CocoDataset(str(folder), str(path))
    assert dataset.classes == ("cat", "dog", "bird") and dataset.category_ids == [1, 3, 90]
    assert dataset[0][1]["labels"].tolist() == [1]
    assert dataset[1][1]["labels"].tolist() == []  # only the background was annotated: a negative image
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{path}: category 0 '{name}' is the background (as labelme's COCO converter writes it), "
                        "not an object class: left out, with its 2 annotation(s)"]

    folder, path = write_coco(tmp_path, [image(1)], [], [{"id": 0, "name": name}, {"id": 1, "name": "person"}])
    assert CocoDataset(str(folder), str(path)).classes == ("person",)
    folder, path = write_coco(tmp_path, [image(1)], [], [{"id": 0, "name": "person"}, {"id": 1, "name": "car"}])
    assert CocoDataset(str(folder), str(path)).classes == ("person", "car")  # id 0 of another name is a class
    folder, path = write_coco(tmp_path, [image(1)], [], [{"id": 0, "name": name}])
    with pytest.raises(LosslabError, match=f"has no category but the background \\(id 0, '{name}'\\)"):
        CocoDataset(str(folder), str(path))


@pytest.mark.parametrize("file_name", ["../outside.png", "sub/../../outside.png", "/etc/hostname"])
def test_file_names_leaving_the_image_folder_are_refused(tmp_path, file_name):
    write_image(tmp_path / "outside.png")
    folder, path = write_coco(tmp_path, [image(1, file_name)], [], write_files=False)
    with pytest.raises(LosslabError, match="outside the image folder.*never reads files outside it"):
        CocoDataset(str(folder), str(path))


def test_symbolic_links_leading_outside_the_image_folder_are_refused_unless_allowed(tmp_path):
    folder, path = write_coco(tmp_path, [image(i) for i in range(1, 5)], [])
    outside = tmp_path / "elsewhere"
    write_image(outside / "photo.png", seed=9)
    write_image(outside / "linked" / "img4.png", seed=4)
    (outside / "secret.txt").write_text("not for reading")
    (folder / "img1.png").unlink()
    (folder / "img1.png").symlink_to(outside / "photo.png")
    (folder / "img2.png").unlink()
    (folder / "img2.png").symlink_to(outside / "secret.txt")  # never opened: refused by its path
    (folder / "img3.png").rename(folder / "real3.png")
    (folder / "img3.png").symlink_to("real3.png")  # a link inside the folder is fine
    (folder / "img4.png").unlink()
    images = [image(1), image(2), image(3), image(4, "sub/img4.png")]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": CATEGORIES}))
    (folder / "sub").symlink_to(outside / "linked")  # a linked folder leading out
    message = (rf"3 image file\(s\) that {path} lists are symbolic links \(or lie in linked folders\) leading outside "
               rf"{folder}: img1.png -> {outside / 'photo.png'}, img2.png -> {outside / 'secret.txt'}, sub/img4.png "
               rf"-> {outside / 'linked' / 'img4.png'}\. .*data.follow_outside_links=true")
    with pytest.raises(LosslabError, match=message):
        CocoDataset(str(folder), str(path))

    (folder / "img2.png").unlink()
    write_image(folder / "img2.png", seed=2)
    dataset = CocoDataset(str(folder), str(path), follow_outside_links=True)  # the user's opt-in
    assert [record.file.path.name for record in dataset.records] == ["img1.png", "img2.png", "img3.png", "img4.png"]
    assert torch.equal(dataset[0][0], torch.from_numpy(np.array(Image.open(outside / "photo.png"))).permute(2, 0, 1)
                       .float() / 255)
    cfg = compose_config(["data=coco", f"data.images={folder}", f"data.annotations={path}",
                          "data.follow_outside_links=true"])
    assert cfg.data.follow_outside_links is True and compose_config(["data=voc"]).data.follow_outside_links is False


def test_missing_and_unreadable_images_are_listed(tmp_path):
    folder, path = write_coco(tmp_path, [image(i) for i in range(1, 9)], [])
    for i in range(1, 8):
        (folder / f"img{i}.png").unlink()
    with pytest.raises(LosslabError, match=r"7 of the 8 images .* are not in .*: img1.png, .*img5.png and 2 more"):
        CocoDataset(str(folder), str(path))
    folder, path = write_coco(tmp_path, [image(1), image(2)], [])
    (folder / "img2.png").write_bytes(b"not an image at all")
    with pytest.raises(LosslabError, match="1 image file.* cannot be read as images: .*img2.png"):
        CocoDataset(str(folder), str(path))


def test_pixels_broken_after_the_header_fail_when_read_naming_the_file(tmp_path):
    folder, path = write_coco(tmp_path, [image(1, "img1.jpg", 300, 300)], [])
    data = (folder / "img1.jpg").read_bytes()
    (folder / "img1.jpg").write_bytes(data[: len(data) // 2])
    dataset = CocoDataset(str(folder), str(path))  # the header is intact
    with pytest.raises(LosslabError, match="image .*img1.jpg cannot be read"):
        dataset[0]


# ---------------------------------------------------------------------------------------------- splits and runs


def training_coco(tmp_path, count: int = 8, size: int = 64):
    """`count` images with one or two rectangles each, polygons for masks, and one more without objects."""
    images = [image(i, width=size, height=size) for i in range(1, count + 2)]
    annotations = []
    for i in range(1, count + 1):
        for k in range(1 + i % 2):
            x0, y0 = 4 + 24 * k, 6 + (i * 5) % 20
            annotations.append(annotation(len(annotations) + 1, i, [1, 3, 90][(i + k) % 3], [x0, y0, 20, 24],
                                          segmentation=rectangle(x0, y0, x0 + 20, y0 + 24)))
    return write_coco(tmp_path, images, annotations)


def coco_overrides(folder, path, *extra: str) -> list[str]:
    tiny = [o for o in TINY if not o.startswith(("data.num_images", "data.image_size", "data.max_objects"))]
    return ["data=coco", f"data.images={folder}", f"data.annotations={path}", "data.num_workers=0", *tiny, *extra]


@pytest.mark.parametrize("arch", ["faster_rcnn", "mask_rcnn"])
def test_a_run_trains_on_coco_data_and_writes_its_split(tmp_path, arch):
    folder, path = training_coco(tmp_path)
    result = run(compose_config(coco_overrides(folder, path, f"model={arch}", "trainer.checkpoints=false",
                                               f"run_dir={tmp_path / 'run'}")))
    assert result.status == "completed" and np.isfinite(result.history[0]["val/loss"])
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(1, 10))
    assert result.summary["classes"] == ["cat", "dog", "bird"]


def test_predefined_split_files_must_agree_and_not_overlap(tmp_path):
    folder, whole = training_coco(tmp_path)
    content = json.loads(whole.read_text())

    def part(name: str, ids: set[int], categories=CATEGORIES) -> str:
        chosen = {"images": [i for i in content["images"] if i["id"] in ids],
                  "annotations": [a for a in content["annotations"] if a["image_id"] in ids],
                  "categories": categories}
        (tmp_path / name).write_text(json.dumps(chosen))
        return str(tmp_path / name)

    data = {"name": "coco", "images": str(folder), "keep_empty": True}
    files = {"train": part("train.json", {1, 2, 3, 4, 5, 9}), "val": part("val.json", {6, 7}), "test": None}
    built = build_datasets(data, {"name": "predefined", "files": files, "from_run": None, "seed": 0})
    assert built.split_ids == {"train": [1, 2, 3, 4, 5, 9], "val": [6, 7], "test": []}
    assert len(built.val) == 2 and built.val[1][1]["image_id"] == 7 and built.has_masks
    overlapping = {**files, "test": part("test.json", {5, 8})}
    with pytest.raises(LosslabError, match=r"split.files: 1 image\(s\) are in two splits .*5 \(train and test\)"):
        build_datasets(data, {"name": "predefined", "files": overlapping, "from_run": None, "seed": 0})
    renamed = {**files, "val": part("val.json", {6, 7}, [*CATEGORIES[:2], {"id": 3, "name": "wolf"}])}
    with pytest.raises(LosslabError, match="split.files.val and split.files.train have different categories"):
        build_datasets(data, {"name": "predefined", "files": renamed, "from_run": None, "seed": 0})


def test_bad_data_on_the_command_line_is_one_paragraph_and_exit_code_1(tmp_path):
    folder, path = training_coco(tmp_path)
    path.write_text(path.read_text()[:-40])
    result = train(*coco_overrides(folder, path, f"run_dir={tmp_path / 'run'}"), cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "instances.json is not valid JSON" in output and "line 1, column" in output and "Traceback" not in output
    written = {p.relative_to(tmp_path / "run").as_posix() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    # The run folder records the failure (summary.json says failed); no split.json, metrics or checkpoints.
    assert written <= {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log",
                       "summary.json"}, written
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_an_image_cut_short_is_the_same_one_line_error_in_a_dataloader_worker(tmp_path):
    """COCO and VOC decode images in 2 worker processes by default: torch re-raises a worker's error with its whole
    traceback, which the error must not carry into the log and summary.json."""
    folder, path = training_coco(tmp_path)
    cut = folder / "img3.png"  # a JPEG under the annotated name: Pillow reads files by their content
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(cut, "JPEG")
    cut.write_bytes(cut.read_bytes()[:-300])  # the header intact, the end cut off
    dataset = CocoDataset(str(folder), str(path))
    with pytest.raises(LosslabError) as in_process:
        for index in range(len(dataset)):
            dataset[index]
    expected = str(in_process.value)
    assert expected.startswith(f"image {cut} cannot be read: ") and "\n" not in expected
    overrides = [o for o in coco_overrides(folder, path) if o != "data.num_workers=0"]
    every_image_loaded = ["split.train=0.75", "split.val=0.25", "split.test=0"]
    with pytest.raises(LosslabError) as in_worker:
        run(compose_config([*overrides, "data.num_workers=2", *every_image_loaded, f"run_dir={tmp_path / 'run'}"]))
    assert str(in_worker.value) == expected
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("failed", expected)


def test_targets_carry_the_files_own_area_and_image_name(tmp_path):
    annotations = [annotation(1, 1, 1, [2, 2, 10, 8], segmentation=rectangle(2, 2, 12, 10), area=61.5),
                   annotation(2, 1, 1, [20, 10, 10, 10])]  # no area: NaN, evaluation then measures it
    dataset = CocoDataset(*map(str, write_coco(tmp_path, [image(1)], annotations)))
    target = dataset[0][1]
    assert target["area"].dtype == torch.float32 and target["area"][0] == 61.5 and target["area"][1].isnan()
    assert target["file_name"] == "img1.png"

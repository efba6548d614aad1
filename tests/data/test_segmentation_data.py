"""task=segmentation's data: the built-in shapes as classes, folders of mask PNGs (palette indices, 255 ignored),
Pascal VOC's segmentation set, COCO rasterised (crowds ignored), augmentations that move image and mask together,
and clear errors for bad masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from losslab.data.mixing import class_mask_mosaic
from losslab.data.segmentation import (
    CocoSegmentation,
    ShapesSegmentation,
    build_segmentation_datasets,
    count_pixels,
    folder_dataset,
    voc_segmentation_dataset,
)
from losslab.data.segmentation_transforms import segmentation_train_transform
from losslab.data.shapes import ShapesDataset
from losslab.errors import LosslabError

SHAPES = {"num_images": 6, "image_size": 48, "min_objects": 1, "max_objects": 3, "seed": 0}


def test_shapes_masks_label_each_pixel_with_the_shape_painted_last_over_it():
    semantic, instances = ShapesSegmentation(**SHAPES), ShapesDataset(**SHAPES)
    for index in range(6):
        image, target = semantic[index]
        same_image, objects = instances[index]
        assert torch.equal(image, same_image)
        for mask, label in zip(objects["masks"], objects["labels"], strict=True):  # visible parts of kept objects
            assert (target["mask"][mask.bool()] == label).all()
        assert set(target["mask"].unique().tolist()) <= {0, 1, 2, 3}
    assert semantic.classes == ("background", "circle", "square", "triangle")


def _write_pair(images, masks, name, mask: np.ndarray, palette: bool = True, size=None):
    height, width = mask.shape
    Image.fromarray(np.full((*(size or (height, width)), 3), 120, dtype=np.uint8)).save(images / f"{name}.jpg")
    index_image = Image.fromarray(mask.astype(np.uint8), mode="P" if palette else "L")
    if palette:  # colours that are not the indices: a reader must take the indices
        index_image.putpalette([v for i in range(256) for v in ((i * 40) % 256, 255 - i, (i * 7) % 256)])
    index_image.save(masks / f"{name}.png")


@pytest.fixture
def folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    return images, masks


def test_a_folder_of_palette_masks_is_read_as_class_indices_with_255_ignored(folders):
    images, masks = folders
    mask = np.zeros((8, 10), dtype=np.uint8)
    mask[2:5, 3:7] = 2
    mask[0, :] = 255
    _write_pair(images, masks, "a", mask)
    _write_pair(images, masks, "b", np.ones((6, 6), dtype=np.uint8), palette=False)
    dataset = folder_dataset(str(images), str(masks), ["background", "road", "car"])
    image, target = dataset[0]
    assert image.shape == (3, 8, 10) and torch.equal(target["mask"], torch.from_numpy(mask.astype(np.int64)))
    assert dataset.image_ids == ["a", "b"]
    assert dataset.class_pixels(0).tolist() == [80 - 10 - 12, 0, 12]  # 80 pixels, 10 ignored, 12 car


def test_bad_masks_give_clear_errors(folders):
    images, masks = folders
    _write_pair(images, masks, "big", np.zeros((8, 8), dtype=np.uint8), size=(9, 8))
    with pytest.raises(LosslabError, match=r"do not have the size of their image: big.jpg 8x9 vs big.png 8x8"):
        folder_dataset(str(images), str(masks), ["background", "car"])
    (images / "big.jpg").unlink()
    _write_pair(images, masks, "wrong", np.full((4, 4), 7, dtype=np.uint8))
    (masks / "big.png").unlink()
    dataset = folder_dataset(str(images), str(masks), ["background", "car"])
    with pytest.raises(LosslabError, match=r"wrong.png holds the class index\(es\) 7, but the data has 2 classes"):
        dataset[0]
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(masks / "wrong.png")  # colours, not indices
    with pytest.raises(LosslabError, match=r"mode RGB: colours, not class indices"):
        folder_dataset(str(images), str(masks), ["background", "car"])
    (masks / "wrong.png").write_bytes(b"not a png")
    with pytest.raises(LosslabError, match=r"cannot be read as single-channel images"):
        folder_dataset(str(images), str(masks), ["background", "car"])
    (masks / "wrong.png").unlink()
    with pytest.raises(LosslabError, match=r"have no mask in data.masks=.*wrong.png"):
        folder_dataset(str(images), str(masks), ["background", "car"])


def test_voc_segmentation_reads_its_image_set_and_ignores_the_border(tmp_path):
    root = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[1:5, 1:5] = 255  # VOC's border around the object
    mask[2:4, 2:4] = 15  # person
    _write_pair(root / "JPEGImages", root / "SegmentationClass", "2007_000032", mask)
    _write_pair(root / "JPEGImages", root / "SegmentationClass", "2007_000039", mask)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n")
    from losslab import compose_config

    classes = list(compose_config(["task=segmentation", "data=voc_seg", "data.root=x"]).data.classes)
    dataset = voc_segmentation_dataset(str(root), "train", classes)
    assert len(dataset) == 1 and classes[15] == "person"
    assert dataset.class_pixels(0).tolist()[0] == 36 - 16 and dataset.class_pixels(0)[15] == 4


def test_coco_instances_are_painted_with_their_class_and_crowds_ignored(tmp_path):
    Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    square = [[1, 1, 5, 1, 5, 5, 1, 5]]
    content = {
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
        "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 4, 4], "segmentation": square, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [6, 6, 3, 3], "iscrowd": 1,
             "segmentation": [[6, 6, 9, 6, 9, 9, 6, 9]]},
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(content))
    dataset = CocoSegmentation(str(tmp_path), str(tmp_path / "instances.json"))
    assert dataset.classes == ("background", "car", "person") and dataset.category_ids == [3, 7]
    mask = dataset[0][1]["mask"]
    assert (mask[2:4, 2:4] == 2).all() and (mask[7, 7] == 255) and mask[0, 0] == 0


def test_augmentations_move_image_and_mask_together_and_pixels_from_outside_are_ignored():
    image = torch.zeros(3, 16, 16)
    image[0, 2:6, 10:14] = 1.0  # a red square ...
    mask = torch.zeros(16, 16, dtype=torch.int64)
    mask[2:6, 10:14] = 3  # ... is class 3
    flip = segmentation_train_transform({"horizontal_flip": {"p": 1.0}})
    flipped, target = flip(image, {"mask": mask, "image_id": 0})
    assert torch.equal(flipped[0] == 1.0, target["mask"] == 3) and (target["mask"][2:6, 2:6] == 3).all()
    rotate = segmentation_train_transform({"rotate": {"p": 1.0, "degrees": 45}})
    torch.manual_seed(0)
    _, rotated = rotate(image, {"mask": mask, "image_id": 0})
    assert set(rotated["mask"].unique().tolist()) <= {0, 3, 255}  # nearest neighbours: no index in between
    assert (rotated["mask"] == 255).any() and rotated["mask"][8, 8] == 0  # corners from outside, centre kept
    with pytest.raises(LosslabError, match="augment.copy_paste pastes object instances"):
        segmentation_train_transform({"copy_paste": {"p": 0.5}})


def test_a_mosaic_of_class_masks_keeps_each_images_class_indices_in_its_quadrant():
    samples = []
    for label in (1, 2, 3, 4):  # image k: class k on its left half (its red channel k / 10), background right
        mask = torch.zeros(16, 24, dtype=torch.int64)
        mask[:, :12] = label
        mask[-1, 0] = 255  # an ignored pixel: kept as 255 where its image's crop keeps it
        image = torch.zeros(3, 16, 24)
        image[0] = (mask == label) * label / 10
        samples.append((image, {"mask": mask, "image_id": label}))
    image, target = class_mask_mosaic(samples, (10, 6))
    mask = target["mask"]
    assert mask.shape == (16, 24) and mask.dtype == torch.int64 and target["image_id"] == 1
    quadrants = [mask[:6, :10], mask[:6, 10:], mask[6:, :10], mask[6:, 10:]]
    for label, quadrant in zip((1, 2, 3, 4), quadrants, strict=True):
        assert set(quadrant.unique().tolist()) <= {0, label, 255}  # nearest neighbours: no blend, no other image's
        assert (quadrant == label).any()
    # Where each class lands: its image's largest crop of the quadrant's shape, at the corner touching the centre.
    assert (mask[:6, :4] == 1).all() and (mask[:6, 10:15] == 2).all()  # crops 24 wide: class on the left 5/10, 7/14
    assert (mask[6:, :2] == 3).all() and (mask[6:, 3:10] == 0).all()  # crop x 8..24 of 24: class on its first 4/16
    assert (mask[6:, 10:16] == 4).all() and (mask[:, 20:] == 0).all()  # crop x 0..22: class on its first 12/22
    assert torch.allclose(image[0, 6:, :2], torch.full((10, 2), 0.3))  # image 3's pixels with its class


def test_augment_strong_mosaics_the_train_split_of_task_segmentation_with_every_class_index_kept():
    data = build_segmentation_datasets({"name": "shapes", **SHAPES, "num_images": 8, "batch_size": 2,
                                        "num_workers": 0},
                                       {"name": "random", "train": 0.5, "val": 0.25, "test": 0.25, "seed": 0},
                                       {"mosaic": {"p": 1.0}})
    torch.manual_seed(0)
    image, target = data.train[0]
    source_image, source = data.train.dataset[data.train.indices[0]]
    assert image.shape == source_image.shape and target["mask"].shape == source["mask"].shape
    assert not torch.equal(image, source_image)  # a mosaic, not the image itself
    assert set(target["mask"].unique().tolist()) <= {0, 1, 2, 3}


def test_stratified_splits_and_pixel_counts_use_the_classes_in_each_mask():
    data = build_segmentation_datasets({"name": "shapes", **SHAPES, "num_images": 12, "batch_size": 2,
                                        "num_workers": 0},
                                       {"name": "stratified", "train": 0.5, "val": 0.25, "test": 0.25, "seed": 0})
    assert sorted(data.split_ids["train"] + data.split_ids["val"] + data.split_ids["test"]) == list(range(12))
    counts = count_pixels(data.train, 4)
    expected = sum(np.bincount(data.train.dataset.mask(i).ravel(), minlength=4) for i in data.train.indices)
    assert counts == expected.tolist() and sum(counts) == 6 * 48 * 48

"""The synthetic dataset, splits, augmentations and loaders."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config
from losslab import build_dataloaders
from losslab.data.datasets import build_datasets
from losslab.data.images import counted
from losslab.data.loaders import collate
from losslab.data.shapes import ShapesDataset
from losslab.data.split import random_split, write_split
from losslab.data.transforms import build_train_transform
from losslab.errors import LosslabError


def mask_extent(mask: torch.Tensor) -> list[float]:
    rows = torch.where(mask.any(dim=1))[0]
    cols = torch.where(mask.any(dim=0))[0]
    return [cols[0].item(), rows[0].item(), cols[-1].item() + 1, rows[-1].item() + 1]


def test_shapes_items_follow_torchvision_detection_convention():
    dataset = ShapesDataset(num_images=6, image_size=48, min_objects=1, max_objects=4, seed=0)
    assert dataset.classes == ("circle", "square", "triangle")
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.shape == (3, 48, 48) and image.dtype == torch.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        n = len(target["labels"])
        assert 1 <= n <= 4
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].dtype == torch.int64 and set(target["labels"].tolist()) <= {1, 2, 3}
        assert target["masks"].shape == (n, 48, 48) and target["masks"].dtype == torch.uint8
        assert target["image_id"] == index
        for box, mask in zip(target["boxes"], target["masks"], strict=True):
            assert mask.sum() > 0
            assert box.tolist() == mask_extent(mask)  # boxes are exactly the visible mask's extent
        # Instances never overlap in their visible masks (later shapes cut earlier ones).
        assert target["masks"].sum(dim=0).max() <= 1


def test_shapes_are_deterministic_per_seed_and_independent_of_size():
    a = ShapesDataset(num_images=4, image_size=32, min_objects=1, max_objects=3, seed=7)
    b = ShapesDataset(num_images=9, image_size=32, min_objects=1, max_objects=3, seed=7)
    c = ShapesDataset(num_images=4, image_size=32, min_objects=1, max_objects=3, seed=8)
    assert torch.equal(a[3][0], b[3][0]) and torch.equal(a[3][1]["boxes"], b[3][1]["boxes"])
    assert not torch.equal(a[3][0], c[3][0])


def test_shapes_cover_every_class_and_colour_does_not_give_the_class_away():
    dataset = ShapesDataset(num_images=40, image_size=48, min_objects=2, max_objects=4, seed=0)
    colours: dict[int, set] = {1: set(), 2: set(), 3: set()}
    for image, target in (dataset[i] for i in range(len(dataset))):
        for label, mask in zip(target["labels"].tolist(), target["masks"].bool(), strict=True):
            mean = image[:, mask].mean(dim=1)
            colours[label].add(int(mean.argmax()))  # dominant channel
    assert all(len(channels) >= 2 for channels in colours.values())


def test_shapes_rejects_bad_sizes():
    with pytest.raises(LosslabError, match="data.min_objects"):
        ShapesDataset(num_images=4, image_size=64, min_objects=3, max_objects=2, seed=0)


def test_counts_are_written_with_the_noun_in_the_number_they_need():
    assert [counted(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert counted(1, "class", "classes") == "1 class" and counted(3, "class", "classes") == "3 classes"


def test_random_split_is_disjoint_complete_and_seeded():
    ids = list(range(50))
    split = random_split(ids, train=0.6, val=0.2, test=0.2, seed=3)
    assert [len(split[s]) for s in ("train", "val", "test")] == [30, 10, 10]
    assert sorted(split["train"] + split["val"] + split["test"]) == ids
    assert split == random_split(ids, train=0.6, val=0.2, test=0.2, seed=3)
    assert split != random_split(ids, train=0.6, val=0.2, test=0.2, seed=4)
    leftover = random_split(list(range(11)), train=0.5, val=0.25, test=0.25, seed=0)
    assert [len(leftover[s]) for s in ("train", "val", "test")] == [5, 3, 3]  # shares 5.5, 2.75, 2.75


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ({"train": 0.7, "val": 0.2, "test": 0.2}, "sum to at most 1"),
        ({"train": 1.2, "val": -0.2, "test": 0.0}, "non-negative"),
        ({"train": 1.0, "val": 0.0, "test": 0.0}, "split.val=0.0 of 10 images leaves the val split empty; raise"),
    ],
)
def test_bad_split_ratios_say_what_to_change(ratios, message):
    with pytest.raises(LosslabError, match=message):
        random_split(list(range(10)), seed=0, **ratios)


def test_ratios_below_one_leave_the_rest_of_the_images_out():
    split = random_split(list(range(100)), train=0.3, val=0.1, test=0.0, seed=0)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (30, 10, 0)
    assert not set(split["train"]) & set(split["val"])


def test_split_json_round_trip(tmp_path):
    split = random_split(list(range(10)), train=0.6, val=0.2, test=0.2, seed=0)
    write_split(tmp_path / "split.json", split, seed=0)
    saved = json.loads((tmp_path / "split.json").read_text())
    assert saved["seed"] == 0 and all(saved[name] == split[name] for name in split)


def test_horizontal_flip_moves_image_boxes_and_masks_together():
    image, target = ShapesDataset(num_images=1, image_size=40, min_objects=3, max_objects=3, seed=1)[0]
    flip = build_train_transform({"horizontal_flip": {"p": 1.0}})
    flipped, flipped_target = flip(image, target)
    assert torch.equal(flipped, image.flip(-1))
    assert torch.equal(flipped_target["masks"], target["masks"].flip(-1))
    assert type(flipped_target["boxes"]) is torch.Tensor
    for box, mask in zip(flipped_target["boxes"], flipped_target["masks"], strict=True):
        assert box.tolist() == mask_extent(mask)
    assert torch.equal(flipped_target["labels"], target["labels"])
    assert build_train_transform({"horizontal_flip": {"p": 0.0}}) is None


def test_augmentation_applies_to_train_split_only():
    data = build_datasets(
        {"name": "shapes", "num_images": 10, "image_size": 32, "min_objects": 1, "max_objects": 2, "seed": 0},
        {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
        {"horizontal_flip": {"p": 1.0}},
    )
    base, indices = data.train.dataset.dataset, data.train.dataset.indices
    assert torch.equal(data.train[0][0], base[indices[0]][0].flip(-1))
    assert torch.equal(data.val[0][0], base[data.val.indices[0]][0])
    assert data.classes == ("circle", "square", "triangle")
    assert sorted(data.split_ids["train"] + data.split_ids["val"] + data.split_ids["test"]) == list(range(10))


def test_build_dataloaders_yields_torchvision_batches():
    loaders = build_dataloaders(tiny_config())
    assert set(loaders) == {"train", "val", "test"}
    assert [len(loaders[s].dataset) for s in ("train", "val", "test")] == [5, 3, 2]
    images, targets = next(iter(loaders["train"]))
    assert len(images) == len(targets) == 2
    assert images[0].shape == (3, 64, 64)
    assert {"boxes", "labels", "masks", "image_id"} <= set(targets[0])
    assert collate([(1, "a"), (2, "b")]) == ((1, 2), ("a", "b"))

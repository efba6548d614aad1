"""Datasets, splits, augmentations and DataLoaders in torchvision's detection convention."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from losslab.data.shapes import ShapesDataset
from losslab.data.split import SPLITS, random_split
from losslab.data.transforms import build_train_transform
from losslab.errors import LosslabError

LOADER_KEYS = ("name", "batch_size", "num_workers")


def load_dataset(data_options: dict) -> Dataset:
    """The full dataset the `data` config section describes, before splitting."""
    readers = {"shapes": ShapesDataset}
    name = data_options["name"]
    options = {key: value for key, value in data_options.items() if key not in LOADER_KEYS}
    if name not in readers:
        raise LosslabError(f"data.name={name!r} is not a dataset losslab can read; expected one of {sorted(readers)}.")
    return readers[name](**options)


class SplitDataset(Dataset):
    """The images of `dataset` at `indices`, each passed through `transform` when given."""

    def __init__(self, dataset: Dataset, indices: list[int], transform: Callable | None = None):
        self.dataset = dataset
        self.indices = indices
        self.transform = transform
        self.classes = dataset.classes

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, target = self.dataset[self.indices[index]]
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target


@dataclass
class DetectionData:
    """The three splits of one dataset, its class names and the image ids of each split."""

    train: SplitDataset
    val: SplitDataset
    test: SplitDataset
    classes: tuple[str, ...]
    split_ids: dict[str, list]


def build_datasets(data_options: dict, split_options: dict, horizontal_flip: float = 0.0) -> DetectionData:
    """Load the dataset, split it by image id and attach the train-time augmentations."""
    dataset = load_dataset(data_options)
    split_ids = random_split(list(dataset.image_ids), **split_options)
    position = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
    indices = {name: [position[image_id] for image_id in split_ids[name]] for name in SPLITS}
    return DetectionData(
        train=SplitDataset(dataset, indices["train"], build_train_transform(horizontal_flip)),
        val=SplitDataset(dataset, indices["val"]),
        test=SplitDataset(dataset, indices["test"]),
        classes=tuple(dataset.classes),
        split_ids=split_ids,
    )


def count_classes(split: SplitDataset, num_classes: int) -> list[int]:
    """Objects of each class (1..num_classes) in a split, read without augmentation."""
    counts = [0] * num_classes
    for index in split.indices:
        for label in split.dataset[index][1]["labels"].tolist():
            counts[label - 1] += 1
    return counts


def collate(batch: list) -> tuple[tuple, tuple]:
    """(images, targets) as tuples: detection images differ in size, so they are not stacked."""
    return tuple(zip(*batch, strict=True))


def make_loaders(
    data: DetectionData, batch_size: int, num_workers: int = 0, seed: int = 0, pin_memory: bool = False
) -> dict[str, DataLoader]:
    """DataLoaders for every split; only train shuffles, with a generator seeded by `seed`."""
    if batch_size < 1:
        raise LosslabError(f"data.batch_size={batch_size}: expected a positive number of images per step.")
    common = dict(batch_size=batch_size, num_workers=num_workers, collate_fn=collate, pin_memory=pin_memory,
                  persistent_workers=num_workers > 0)
    return {
        "train": DataLoader(data.train, shuffle=True, generator=torch.Generator().manual_seed(seed), **common),
        "val": DataLoader(data.val, shuffle=False, **common),
        "test": DataLoader(data.test, shuffle=False, **common),
    }

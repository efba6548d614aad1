"""A configured dataset: loaded, split by image id, the train split augmented (`build_datasets`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import Dataset

from losslab.data.coco import CocoDataset
from losslab.data.mixing import AugmentedDataset, augmented
from losslab.data.shapes import ShapesDataset
from losslab.data.split import (
    DATA_WITH_SPLITS,
    SPLITS,
    check_disjoint,
    check_split_options,
    random_split,
    read_split,
    saved_split,
    stratified_split,
)
from losslab.data.voc import VocDataset
from losslab.data.yolo import YoloDataset
from losslab.errors import LosslabError

LOADER_KEYS = ("name", "batch_size", "num_workers")
READERS = {"shapes": ShapesDataset, "coco": CocoDataset, "voc": VocDataset, "yolo": YoloDataset}
# The data option that split=predefined's split.files replace, one file per split.
SPLIT_FILE_OPTIONS = {"coco": "annotations", "voc": "image_set", "voc_seg": "image_set"}


def load_dataset(data_options: dict) -> Dataset:
    """The full dataset the `data` config section describes, before splitting.

    Every dataset has `classes` (label i is classes[i - 1]), `category_ids` (the annotations' id of each
    label), `image_ids`, `has_masks`, `object_labels(index)` (the labels of one image's objects) and
    `image_labels()` (the labels present in each image), both read without decoding pixels.
    """
    name = data_options["name"]
    options = {key: value for key, value in data_options.items() if key not in LOADER_KEYS}
    if name not in READERS:
        raise LosslabError(f"data.name={name!r} is not a dataset losslab can read; expected one of {sorted(READERS)}.")
    return READERS[name](**options)


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

    train: SplitDataset | AugmentedDataset
    val: SplitDataset
    test: SplitDataset
    classes: tuple[str, ...]
    split_ids: dict[str, list]
    has_masks: bool = True  # every split's targets carry instance masks (Mask R-CNN needs them)
    category_ids: tuple[int, ...] = ()  # the annotations' category id of each label (label k: category_ids[k - 1])


def build_datasets(data_options: dict, split_options: dict, augment_options: dict | None = None) -> DetectionData:
    """Load the dataset, split it by image id and attach the train-time augmentations (`augment` section)."""
    parts = split_datasets(data_options, split_options)
    used = [dataset for dataset, indices in parts.values() if indices]
    return DetectionData(
        train=augmented(SplitDataset(*parts["train"]), augment_options or {}),
        val=SplitDataset(*parts["val"]),
        test=SplitDataset(*parts["test"]),
        classes=tuple(parts["train"][0].classes),
        split_ids={name: [dataset.image_ids[i] for i in indices] for name, (dataset, indices) in parts.items()},
        has_masks=all(dataset.has_masks for dataset in used),
        category_ids=tuple(parts["train"][0].category_ids),
    )


def split_datasets(data_options: dict, split_options: dict,
                   load: Callable[[dict], Dataset] = load_dataset) -> dict[str, tuple[Dataset, list[int]]]:
    """Each split as (dataset, indices of its images), as `split_options` (the `split` config section) says;
    `load` reads a dataset from data options (task=segmentation: losslab.data.segmentation's)."""
    check_split_options(split_options, own_split=data_options["name"] in DATA_WITH_SPLITS)
    kind = split_options.get("name", "random")
    files = {split: file for split, file in (split_options.get("files") or {}).items() if file}
    if kind == "predefined" and files:
        return _datasets_per_file(data_options, files, load)
    dataset = load(data_options)
    ids = list(dataset.image_ids)
    if kind == "random":
        split_ids = random_split(ids, **_ratios(split_options))
    elif kind == "stratified":
        labels = dataset.image_labels()
        split_ids = stratified_split({image_id: labels[image_id] for image_id in ids}, **_ratios(split_options))
    elif split_options.get("from_run"):
        split_ids = saved_split(ids, read_split(split_options["from_run"]), split_options["from_run"])
    else:  # split=predefined by the data's own splits (check_split_options allowed nothing else)
        split_ids = dataset.own_split()
    position = {image_id: i for i, image_id in enumerate(ids)}
    return {name: (dataset, [position[image_id] for image_id in split_ids[name]]) for name in SPLITS}


def _ratios(split_options: dict) -> dict:
    return {key: split_options[key] for key in ("train", "val", "test", "seed")}


def _datasets_per_file(data_options: dict, files: dict, load: Callable[[dict], Dataset]
                       ) -> dict[str, tuple[Dataset, list[int]]]:
    """split=predefined with split.files: one dataset per split, read from that split's annotation file."""
    name = data_options["name"]
    if name not in SPLIT_FILE_OPTIONS:
        raise LosslabError(f"split.files names annotation files per split, which data={name} does not have; use "
                           f"data={' or data='.join(SPLIT_FILE_OPTIONS)}, or split.from_run=RUN_DIR to reuse a split.")
    parts = {}
    for split, file in files.items():
        try:
            dataset = load({**data_options, SPLIT_FILE_OPTIONS[name]: file})
        except LosslabError as error:
            raise LosslabError(f"split.files.{split}={file}: {error}") from error
        parts[split] = (dataset, list(range(len(dataset))))
    _check_same_classes(parts)
    check_disjoint({split: parts[split][0].image_ids if split in parts else [] for split in SPLITS}, "split.files")
    train = parts["train"][0]
    return {split: parts.get(split, (train, [])) for split in SPLITS}


def _check_same_classes(parts: dict[str, tuple[Dataset, list[int]]]) -> None:
    train = parts["train"][0]
    for split, (dataset, _) in parts.items():
        if (dataset.classes, dataset.category_ids) != (train.classes, train.category_ids):
            raise LosslabError(
                f"split.files.{split} and split.files.train have different categories: "
                f"{dict(zip(dataset.category_ids, dataset.classes, strict=True))} against "
                f"{dict(zip(train.category_ids, train.classes, strict=True))}. Labels would mean different classes; "
                "give every split file the same categories list."
            )


def count_classes(split: SplitDataset, num_classes: int) -> list[int]:
    """Objects of each class (1..num_classes) in a split, from the annotations: no image is decoded."""
    if isinstance(split, AugmentedDataset):
        split = split.dataset
    counts = [0] * num_classes
    for index in split.indices:
        for label in split.dataset.object_labels(index):
            counts[label - 1] += 1
    return counts

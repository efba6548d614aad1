"""The types of the `data` and `split` config sections, one dataclass per `data=` and `split=` option, as Hydra
checks them at composition (losslab.config.schema assembles the whole config's). Defaults live in the YAML options
under conf/data and conf/split."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class DataConfig:
    name: str = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING


@dataclass
class ShapesDataConfig(DataConfig):
    num_images: int = MISSING
    image_size: int = MISSING
    min_objects: int = MISSING
    max_objects: int = MISSING
    seed: int = MISSING
    object_size: list[float] = MISSING


@dataclass
class CocoDataConfig(DataConfig):
    images: str = MISSING
    annotations: str = MISSING
    keep_empty: bool = MISSING
    follow_outside_links: bool = MISSING
    cache: bool = MISSING


@dataclass
class VocDataConfig(DataConfig):
    root: str = MISSING
    image_set: str | None = MISSING
    keep_difficult: bool = MISSING
    classes: list[str] = MISSING
    follow_outside_links: bool = MISSING


@dataclass
class FolderDataConfig(DataConfig):
    images: str = MISSING
    masks: str = MISSING
    classes: list[str] = MISSING


@dataclass
class VocSegDataConfig(DataConfig):
    root: str = MISSING
    image_set: str = MISSING
    classes: list[str] = MISSING


@dataclass
class YoloDataConfig(DataConfig):
    yaml: str = MISSING
    cache: bool = MISSING


# What each dataset cannot do without (for the message when a key is unset).
REQUIRED_DATA_KEYS = {"coco": "data.images=DIR and data.annotations=FILE.json", "voc": "data.root=DIR",
                      "voc_seg": "data.root=DIR", "yolo": "data.yaml=DATA.yaml",
                      "folder": "data.images=DIR, data.masks=DIR and data.classes=[background,...]"}


@dataclass
class SplitConfig:
    name: str = MISSING
    seed: int = MISSING


@dataclass
class RandomSplitConfig(SplitConfig):
    train: float = MISSING
    val: float = MISSING
    test: float = MISSING


@dataclass
class SplitFiles:
    train: str | None = MISSING
    val: str | None = MISSING
    test: str | None = MISSING


@dataclass
class PredefinedSplitConfig(SplitConfig):
    files: SplitFiles = field(default_factory=SplitFiles)
    from_run: str | None = MISSING

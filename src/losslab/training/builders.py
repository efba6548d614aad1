"""Config in, objects out: the data, loaders and model a composed config describes (the public Python API,
and the pieces `run` starts from)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from losslab.config.validation import unset_data_keys
from losslab.data.datasets import DetectionData, build_datasets, count_classes
from losslab.data.loaders import make_loaders
from losslab.distributed import World, launched_world
from losslab.errors import LosslabError
from losslab.losses.build import build_losses, loss_choices, needs_class_counts
from losslab.modeling.detectors import build_detector
from losslab.modeling.runtime import resolve_device
from losslab.modeling.start import load_start_weights, locate_start_weights


def build_data(cfg: DictConfig) -> DetectionData:
    """The configured dataset, split and augmented (train split only).

    Bad data raises a LosslabError here, before split.json or anything else of the run is written.
    """
    unset = unset_data_keys(cfg)
    if unset:
        raise LosslabError(f"{unset}.")
    data = build_datasets(
        OmegaConf.to_container(cfg.data),
        OmegaConf.to_container(cfg.split),
        OmegaConf.to_container(cfg.augment),
    )
    if cfg.model.arch == "mask_rcnn" and not data.has_masks:
        raise LosslabError(f"model=mask_rcnn learns instance masks, but data={cfg.data.name} has none (VOC has boxes "
                           "only; COCO needs 'segmentation' polygons or RLE). Use model=faster_rcnn or "
                           "model=retinanet, or data with masks.")
    return data


def build_dataloaders(cfg: DictConfig, data: DetectionData | None = None, world: World | None = None
                      ) -> dict[str, DataLoader]:
    """{"train", "val", "test"} DataLoaders yielding (images, targets) as torchvision expects;
    under torchrun each process loads its share of every split."""
    data = data or build_data(cfg)
    world = world or launched_world()
    device = resolve_device(cfg.trainer.device, world)
    return make_loaders(data, cfg.data.batch_size, cfg.data.num_workers, seed=cfg.trainer.seed,
                        pin_memory=device.type == "cuda", world=world)


def build_model(cfg: DictConfig, num_classes: int | None = None, class_counts: list[int] | None = None,
                start: bool = True) -> nn.Module:
    """The detector `cfg.model` describes, with the losses of `cfg.loss` wired into its heads and, with `start`,
    the weights `cfg.model.weights` names loaded (head surgery fits them to the number of classes).

    `num_classes` counts object classes (background excluded) and `class_counts` the objects of each class in
    the train split (what loss/cls=weighted_ce's automatic weights need); both are read from the configured
    dataset when not given.
    """
    choices, weights = loss_choices(OmegaConf.to_container(cfg.loss, resolve=True))
    if num_classes is None or (class_counts is None and needs_class_counts([choices])):
        data = build_data(cfg)
        num_classes = len(data.classes)
        if needs_class_counts([choices]):
            class_counts = count_classes(data.train, num_classes)
    losses = build_losses(cfg.model.arch, choices, weights, class_counts, num_classes)
    model_options = OmegaConf.to_container(cfg.model, resolve=True)
    model = build_detector(model_options, losses, num_classes)
    if start:
        load_start_weights(model, locate_start_weights(model_options), model_options)
    return model

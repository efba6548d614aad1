"""Config in, objects out: the data, loaders and model a composed config describes (the public Python API,
and the pieces `run` starts from); what differs between detection and segmentation comes from
losslab.evaluation.tasks."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from losslab.config.validation import unset_data_keys
from losslab.data.datasets import DetectionData
from losslab.data.loaders import make_loaders
from losslab.data.segmentation import SegmentationData
from losslab.distributed import World, launched_world
from losslab.errors import LosslabError
from losslab.evaluation.tasks import SEGMENTATION, task
from losslab.modeling.runtime import resolve_device


def build_data(cfg: DictConfig) -> DetectionData | SegmentationData:
    """The configured dataset, split and augmented (train split only).

    Bad data raises a LosslabError here, before split.json or anything else of the run is written.
    """
    unset = unset_data_keys(cfg)
    if unset:
        raise LosslabError(f"{unset}.")
    data = task(cfg).build_data(
        OmegaConf.to_container(cfg.data),
        OmegaConf.to_container(cfg.split),
        OmegaConf.to_container(cfg.augment),
    )
    if cfg.model.arch == "mask_rcnn" and not data.has_masks:
        raise LosslabError(f"model=mask_rcnn learns instance masks, but data={cfg.data.name} has none (VOC has boxes "
                           "only; COCO needs 'segmentation' polygons or RLE). Use model=faster_rcnn or "
                           "model=retinanet, or data with masks.")
    return data


def build_dataloaders(cfg: DictConfig, data: DetectionData | SegmentationData | None = None,
                      world: World | None = None) -> dict[str, DataLoader]:
    """{"train", "val", "test"} DataLoaders yielding (images, targets) as torchvision expects;
    under torchrun each process loads its share of every split."""
    data = data or build_data(cfg)
    world = world or launched_world()
    device = resolve_device(cfg.trainer.device, world)
    return make_loaders(data, cfg.data.batch_size, cfg.data.num_workers, seed=cfg.trainer.seed,
                        pin_memory=device.type == "cuda", world=world, drop_lone_image=task(cfg).name == SEGMENTATION)


def build_model(cfg: DictConfig, num_classes: int | None = None, class_counts: list[int] | None = None,
                start: bool = True) -> nn.Module:
    """The model `cfg.model` describes, with the losses of `cfg.loss` wired in: a detector, or a segmenter with
    task=segmentation; with `start`, the weights `cfg.model.weights` names loaded (detectors: head surgery fits them
    to the number of classes).

    `num_classes` counts the dataset's classes (detection: object classes, background excluded; segmentation:
    pixel classes, background included) and `class_counts` the train split's objects (segmentation: pixels) of
    each class, what weighted_ce's automatic weights need; both are read from the configured dataset when not given.
    """
    kind = task(cfg)
    choices, weights = kind.loss_choices(OmegaConf.to_container(cfg.loss, resolve=True))
    needs_counts = kind.needs_class_counts([choices])
    if num_classes is None or (class_counts is None and needs_counts):
        data = build_data(cfg)
        num_classes = len(data.classes)
        if needs_counts:
            class_counts = kind.class_counts(data)
    model_options = OmegaConf.to_container(cfg.model, resolve=True)
    model = kind.build_model(model_options, kind.build_losses(model_options, choices, weights, class_counts,
                                                              num_classes), num_classes)
    if start:
        kind.load_start_weights(model, kind.locate_start_weights(model_options), model_options)
    return model

"""Config checks of task=segmentation (and of options of one task chosen for the other), as messages naming the
keys: losslab.config.validation runs them with the rest."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

SEGMENTATION_METRICS = ("mIoU", "mDice", "pixel_accuracy")
SEGMENTATION_DATA = ("shapes", "folder", "voc_seg", "coco")
DETECTION_ONLY_DATA = ("voc",)
SEGMENTATION_ONLY_DATA = ("folder", "voc_seg")


def segmentation_monitor_choices(aux: bool, evaluates: bool = False) -> list[str]:
    """The metrics.csv columns a segmentation run logs every epoch, which `trainer.monitor` may name."""
    components = ["loss", "pixel", *(["aux"] if aux else [])]
    columns = ["lr", *(f"{split}/{name}" for split in ("train", "val") for name in components),
               "val/ref_loss", "val/ref_pixel"]
    if evaluates:
        columns += [f"val/{metric}" for metric in SEGMENTATION_METRICS]
    return columns


def cross_task_problems(task: str, arch: str, data: str, detector_archs: tuple[str, ...],
                        segmenter_archs: tuple[str, ...]) -> list[str]:
    """A model or dataset (`data`: data.name) of the other task: what to add or change."""
    problems = []
    if task == "detection" and arch in segmenter_archs:
        problems.append(f"model={arch} is a semantic segmentation model; add task=segmentation")
    if task == "segmentation" and arch in detector_archs:
        problems.append(f"model={arch} is a detector; task=segmentation trains {' | '.join(segmenter_archs)} "
                        "(model=lraspp by default)")
    if task == "detection" and data in SEGMENTATION_ONLY_DATA:
        problems.append(f"data={data} holds semantic masks, not objects; add task=segmentation")
    if task == "segmentation" and data in DETECTION_ONLY_DATA:
        problems.append(f"data={data} holds boxes only; task=segmentation reads Pascal VOC's segmentation set with "
                        "data=voc_seg")
    return problems


def segmentation_problems(cfg: DictConfig) -> list[str]:
    """The model, start weights, augmentation and monitor of a task=segmentation config."""
    from losslab.data.augment_options import MIXING, enabled
    from losslab.modeling.segmentation_weights import COCO_VOC
    from losslab.modeling.segmenters import BUILDERS, has_aux

    model = cfg.model
    problems = [f"augment.{name}.p={cfg.augment[name].p}: {name} mixes object instances between images, which "
                "task=segmentation does not have; set it to 0 (augment=basic and augment=none do)"
                for name in enabled(OmegaConf.to_container(cfg.augment), MIXING)]
    if model.arch not in BUILDERS:
        return problems  # cross_task_problems named it
    if model.backbone not in BUILDERS[model.arch]:
        problems.append(f"model.backbone={model.backbone}: model={model.arch} has the backbones "
                        f"{', '.join(BUILDERS[model.arch])}")
    if model.weights not in (None, COCO_VOC):
        problems.append(f"model.weights={model.weights}: expected null (random) or {COCO_VOC} (torchvision's "
                        "weights trained on COCO with the Pascal VOC classes)")
    if model.weights is not None and model.pretrained:
        problems.append(f"model.pretrained=true downloads ImageNet backbone weights that model.weights={model.weights} "
                        "replaces; set model.pretrained=false")
    choices = segmentation_monitor_choices(has_aux(dict(model)), evaluates=True)  # watching one evaluates every epoch
    for key, monitor in (("trainer.monitor", cfg.trainer.monitor),
                         ("trainer.early_stopping.monitor", cfg.trainer.early_stopping.monitor)):
        if monitor not in choices:
            problems.append(f"{key}={monitor}: expected one of {', '.join(choices)}")
    return problems

"""Dataclass schemas of every config group, registered in Hydra's ConfigStore.

Each YAML option under conf/ starts from one of these schemas (its defaults list names
`/schema/<group>/<kind>`), so a wrong type or an unknown key fails at composition with Hydra's
own message. Polymorphic groups (optimizer, scheduler, loss components) have one schema per kind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from losslab.data.transforms import AugmentConfig, validate_augment
from losslab.data.voc import VOC_CLASSES
from losslab.errors import LosslabError


def config_dir() -> Path:
    """The folder holding train.yaml: inside the package for a wheel, ./conf for a checkout."""
    packaged = Path(__file__).parent / "conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "conf"


@dataclass
class ModelConfig:
    arch: str = MISSING
    backbone: str = "resnet18_fpn"
    pretrained: bool = False
    trainable_backbone_layers: int | None = None
    min_size: int = 128
    max_size: int = 128
    box_batch_size_per_image: int = 64
    rpn_post_nms_top_n_test: int = 300


@dataclass
class LossComponentConfig:
    name: str = MISSING


def loss_schemas() -> dict[str, type]:
    """One schema per selectable loss, generated from the catalogue: `name` plus its parameters."""
    from losslab.losses import CATALOGUE

    schemas: dict[str, type] = {}
    for key, losses in CATALOGUE.items():
        schemas[f"loss_{key}/default"] = LossComponentConfig
        for name, loss in losses.items():
            fields = [("name", str, field(default=name))]
            fields += [(param, Any if param == "weights" else type(value), field(default=value))
                       for param, value in loss.params.items()]
            schemas[f"loss_{key}/{name}"] = make_dataclass(f"{key}_{name}_loss", fields, bases=(LossComponentConfig,))
    return schemas


@dataclass
class LossPhase:
    epochs: int = 1
    losses: dict[str, Any] = field(default_factory=dict)
    lr_factor: float = 1.0


@dataclass
class LossSchedule:
    phases: list[LossPhase] = field(default_factory=list)
    cycle: bool = False


@dataclass
class LossWeights:
    classification: float = 1.0
    box_regression: float = 1.0
    objectness: float = 1.0
    rpn_box_regression: float = 1.0
    mask: float = 1.0


@dataclass
class LossConfig:
    cls: LossComponentConfig = MISSING
    box: LossComponentConfig = MISSING
    objectness: LossComponentConfig = MISSING
    mask: LossComponentConfig = MISSING
    weights: LossWeights = field(default_factory=LossWeights)
    schedule: LossSchedule = field(default_factory=LossSchedule)


@dataclass
class DataConfig:
    name: str = MISSING
    batch_size: int = 4
    num_workers: int = 0


@dataclass
class ShapesDataConfig(DataConfig):
    name: str = "shapes"
    num_images: int = 96
    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    seed: int = 0


@dataclass
class CocoDataConfig(DataConfig):
    name: str = "coco"
    images: str = MISSING  # folder of the images; file_name in the annotations is relative to it
    annotations: str = MISSING  # COCO instances JSON (not needed with split=predefined split.files)
    keep_empty: bool = True  # images without annotations are kept as negatives


@dataclass
class VocDataConfig(DataConfig):
    name: str = "voc"
    root: str = MISSING  # the folder holding JPEGImages/, Annotations/, ImageSets/Main/
    image_set: str | None = "trainval"  # ImageSets/Main/<image_set>.txt or a list's path; null: all Annotations/
    keep_difficult: bool = False
    classes: list[str] = field(default_factory=lambda: list(VOC_CLASSES))


# What each dataset cannot do without (for the message when a key is unset).
REQUIRED_DATA_KEYS = {"coco": "data.images=DIR and data.annotations=FILE.json", "voc": "data.root=DIR"}


@dataclass
class SplitConfig:
    name: str = MISSING
    seed: int = 0


@dataclass
class RandomSplitConfig(SplitConfig):
    name: str = "random"
    train: float = 0.5
    val: float = 0.25
    test: float = 0.25


@dataclass
class StratifiedSplitConfig(RandomSplitConfig):
    name: str = "stratified"


@dataclass
class SplitFiles:
    train: str | None = None
    val: str | None = None
    test: str | None = None


@dataclass
class PredefinedSplitConfig(SplitConfig):
    name: str = "predefined"
    files: SplitFiles = field(default_factory=SplitFiles)
    from_run: str | None = None


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    lr: float = MISSING
    exempt_norm_and_bias: bool = False


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"
    lr: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 1e-4


@dataclass
class AdamaxConfig(AdamConfig):
    _target_: str = "torch.optim.Adamax"
    lr: float = 1e-3


@dataclass
class AdadeltaConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adadelta"
    lr: float = 1.0
    rho: float = 0.9
    eps: float = 1e-6
    weight_decay: float = 0.0


@dataclass
class AdagradConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adagrad"
    lr: float = 0.01
    lr_decay: float = 0.0
    eps: float = 1e-10
    weight_decay: float = 0.0


@dataclass
class ASGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.ASGD"
    lr: float = 0.01
    lambd: float = 1e-4
    alpha: float = 0.75
    t0: float = 1e6
    weight_decay: float = 0.0


@dataclass
class RpropConfig(OptimizerConfig):
    _target_: str = "torch.optim.Rprop"
    lr: float = 0.01
    etas: list[float] = field(default_factory=lambda: [0.5, 1.2])
    step_sizes: list[float] = field(default_factory=lambda: [1e-6, 50.0])


@dataclass
class RMSpropConfig(OptimizerConfig):
    _target_: str = "torch.optim.RMSprop"
    lr: float = 1e-3
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass
class LionConfig(OptimizerConfig):
    _target_: str = "losslab.lion.Lion"
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 1e-2


@dataclass
class SchedulerConfig:
    _target_: str = MISSING
    interval: str = "epoch"
    warmup_epochs: float = 1.0
    warmup_factor: float = 0.001


@dataclass
class ConstantSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.ConstantLR"
    factor: float = 1.0
    total_iters: int = 0


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.StepLR"
    step_size: int = 3
    gamma: float = 0.1


@dataclass
class MultiStepSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.MultiStepLR"
    milestones: list[int] = field(default_factory=lambda: [4, 5])
    gamma: float = 0.1


@dataclass
class ExponentialSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.ExponentialLR"
    gamma: float = 0.7


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.CosineAnnealingLR"
    T_max: int = 6
    eta_min: float = 0.0


@dataclass
class CyclicSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.CyclicLR"
    interval: str = "step"
    base_lr: float = 5e-5
    max_lr: float = 5e-4
    step_size_up: int = 12
    mode: str = "triangular2"
    cycle_momentum: bool = False


@dataclass
class PlateauSchedulerConfig(SchedulerConfig):
    _target_: str = "torch.optim.lr_scheduler.ReduceLROnPlateau"
    mode: str = "min"
    factor: float = 0.1
    patience: int = 1
    threshold: float = 1e-3


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = "val/loss"
    mode: str = "min"
    patience: int = 3
    min_delta: float = 0.0


@dataclass
class TrainerConfig:
    max_epochs: int = 6
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    monitor: str = "val/loss"
    mode: str = "min"
    checkpoints: bool = True
    grad_clip_norm: float | None = None
    on_nonfinite: str = "stop"
    max_skipped_batches: int = 10
    precision: str = "32"
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class EvalConfig:
    every: int = 2
    score_threshold: float = 0.5


@dataclass
class SweepConfig:
    rank_by: str = "val/loss"
    mode: str | None = None


@dataclass
class LoggerConfig:
    backends: list[str] = field(default_factory=list)
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "losslab"


@dataclass
class TrainConfig:
    model: ModelConfig = MISSING
    loss: LossConfig = MISSING
    data: DataConfig = MISSING
    split: SplitConfig = MISSING
    augment: AugmentConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    scheduler: SchedulerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    run_dir: str | None = None
    resume: str | None = None


SCHEMAS: dict[str, type] = {
    "train": TrainConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    **loss_schemas(),
    "data/shapes": ShapesDataConfig,
    "data/coco": CocoDataConfig,
    "data/voc": VocDataConfig,
    "split/random": RandomSplitConfig,
    "split/stratified": StratifiedSplitConfig,
    "split/predefined": PredefinedSplitConfig,
    "augment": AugmentConfig,
    "optimizer/sgd": SGDConfig,
    "optimizer/adam": AdamConfig,
    "optimizer/adamw": AdamWConfig,
    "optimizer/adamax": AdamaxConfig,
    "optimizer/adadelta": AdadeltaConfig,
    "optimizer/adagrad": AdagradConfig,
    "optimizer/asgd": ASGDConfig,
    "optimizer/rprop": RpropConfig,
    "optimizer/rmsprop": RMSpropConfig,
    "optimizer/lion": LionConfig,
    "scheduler/constant": ConstantSchedulerConfig,
    "scheduler/step": StepSchedulerConfig,
    "scheduler/multistep": MultiStepSchedulerConfig,
    "scheduler/exponential": ExponentialSchedulerConfig,
    "scheduler/cosine": CosineSchedulerConfig,
    "scheduler/cyclic": CyclicSchedulerConfig,
    "scheduler/plateau": PlateauSchedulerConfig,
    "trainer": TrainerConfig,
    "logger": LoggerConfig,
}


def register_schemas() -> None:
    """Store every schema as `schema/<group>/<kind>`; YAML options extend them by name."""
    store = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        group, _, kind = name.rpartition("/")
        store.store(group=f"schema/{group}".rstrip("/"), name=kind, node=node)


register_schemas()

# Hydra's run folder is the first of resume, run_dir and outputs/DATE/TIME that is set, and a resumed
# run keeps its own .hydra/ files: the resolvers train.yaml uses for that.
def _resumable(resume: str | None) -> bool:
    return bool(resume) and Path(resume).is_dir()  # a wrong path must not create a folder


def _run_dir(resume: str | None, run_dir: str | None, new: str) -> str:
    rank = int(os.environ.get("RANK", 0))
    if rank > 0:
        # Under torchrun only rank 0 writes the run folder (the others learn its path from rank 0);
        # the other processes' Hydra files (their config copy and log) go to a scratch folder.
        return str(Path(tempfile.gettempdir()) / f"losslab-rank{rank}-{os.getpid()}")
    return resume if _resumable(resume) else run_dir or new


OmegaConf.register_new_resolver("losslab_run_dir", _run_dir, replace=True)
OmegaConf.register_new_resolver(
    "losslab_hydra_subdir", lambda resume: ".hydra/resume" if _resumable(resume) else ".hydra", replace=True
)


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The config `train` would run with these command-line overrides (Hydra's compose API)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides or []))


PRECISIONS = ("32", "16-mixed", "bf16-mixed")
DETECTION_METRICS = ("mAP", "mAP50", "mAP75", "mAR100", "precision", "recall", "F1")


def monitor_choices(arch: str, evaluates: bool = False) -> list[str]:
    """The metrics.csv columns a run of `arch` logs every epoch, which `trainer.monitor` may name."""
    from losslab.losses import ARCH_COMPONENTS

    names = ["loss", *ARCH_COMPONENTS[arch]]
    columns = ["lr"] + [f"{prefix}{name}" for prefix in ("train/", "val/", "val/ref_") for name in names]
    if evaluates:
        columns += [f"val/{metric}" for metric in DETECTION_METRICS]
        if arch == "mask_rcnn":
            columns += [f"val/mask_{metric}" for metric in DETECTION_METRICS[:4]]
    return columns


def unset_data_keys(cfg: DictConfig) -> str | None:
    """What `data=<name>` needs that is still unset (??? in the config), in one sentence; None when nothing is.

    A COCO annotation file may instead come from split=predefined's split.files.
    """
    unset = [f"data.{key}" for key in cfg.data if OmegaConf.is_missing(cfg.data, key)]
    if cfg.split.get("files") and cfg.split.files.get("train"):
        unset = [key for key in unset if key != "data.annotations"]
    if not unset:
        return None
    needs = REQUIRED_DATA_KEYS.get(cfg.data.name, " and ".join(unset))
    return f"data={cfg.data.name} needs {needs}; not set: {', '.join(unset)}"


def validate(cfg: DictConfig) -> None:
    """Checks beyond types: every problem found, in one LosslabError naming the keys and what is expected."""
    problems = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    check(cfg.trainer.max_epochs >= 1, f"trainer.max_epochs={cfg.trainer.max_epochs}: expected at least 1")
    check(cfg.optimizer.lr > 0, f"optimizer.lr={cfg.optimizer.lr}: expected a positive learning rate")
    weight_decay = cfg.optimizer.get("weight_decay", 0.0)
    check(weight_decay >= 0, f"optimizer.weight_decay={weight_decay}: expected >= 0")
    check(cfg.data.batch_size >= 1, f"data.batch_size={cfg.data.batch_size}: expected at least 1 image per step")
    check(cfg.data.num_workers >= 0, f"data.num_workers={cfg.data.num_workers}: expected 0 or more")
    check(0 < cfg.model.min_size <= cfg.model.max_size,
          f"model.min_size={cfg.model.min_size}, model.max_size={cfg.model.max_size}: "
          "expected 0 < min_size <= max_size")
    problems += validate_augment(OmegaConf.to_container(cfg.augment))
    check(cfg.scheduler.warmup_epochs >= 0, f"scheduler.warmup_epochs={cfg.scheduler.warmup_epochs}: expected >= 0")
    check(0 < cfg.scheduler.warmup_factor <= 1,
          f"scheduler.warmup_factor={cfg.scheduler.warmup_factor}: expected a factor in (0, 1]")
    for component, weight in cfg.loss.weights.items():
        check(weight >= 0, f"loss.weights.{component}={weight}: expected >= 0")
    from losslab.models import ARCHS, BACKBONES

    check(cfg.model.arch in ARCHS, f"model.arch={cfg.model.arch}: expected one of {', '.join(ARCHS)}")
    check(cfg.model.backbone in BACKBONES,
          f"model.backbone={cfg.model.backbone}: expected one of {', '.join(BACKBONES)}")
    from losslab.data.split import check_split_options

    try:
        check_split_options(OmegaConf.to_container(cfg.split))
    except LosslabError as error:
        problems.append(str(error).removeprefix("split: ").rstrip("."))
    unset = unset_data_keys(cfg)
    check(unset is None, str(unset))
    trainer, stopping = cfg.trainer, cfg.trainer.early_stopping
    check(trainer.mode in ("min", "max"), f"trainer.mode={trainer.mode}: expected min or max")
    check(stopping.mode in ("min", "max"), f"trainer.early_stopping.mode={stopping.mode}: expected min or max")
    check(stopping.patience >= 0, f"trainer.early_stopping.patience={stopping.patience}: expected 0 or more epochs")
    check(stopping.min_delta >= 0, f"trainer.early_stopping.min_delta={stopping.min_delta}: expected >= 0")
    check(trainer.grad_clip_norm is None or trainer.grad_clip_norm > 0,
          f"trainer.grad_clip_norm={trainer.grad_clip_norm}: expected a positive norm, or null for no clipping")
    check(trainer.on_nonfinite in ("stop", "skip"),
          f"trainer.on_nonfinite={trainer.on_nonfinite}: expected stop or skip")
    check(trainer.precision in PRECISIONS,
          f"trainer.precision={trainer.precision}: expected one of {', '.join(PRECISIONS)}")
    check(trainer.max_skipped_batches >= 0,
          f"trainer.max_skipped_batches={trainer.max_skipped_batches}: expected 0 or more")
    from losslab.loggers import LOGGERS

    unknown = [name for name in cfg.logger.backends if name not in LOGGERS]
    check(not unknown, f"logger.backends has {unknown}: expected names among {', '.join(LOGGERS)}")
    check(cfg.eval.every >= 0, f"eval.every={cfg.eval.every}: expected 0 (off) or a number of epochs")
    check(0.0 <= cfg.eval.score_threshold <= 1.0,
          f"eval.score_threshold={cfg.eval.score_threshold}: expected a score in [0, 1]")
    check(cfg.scheduler.interval in ("epoch", "step"),
          f"scheduler.interval={cfg.scheduler.interval}: expected epoch or step")
    if cfg.model.arch in ARCHS:
        choices = monitor_choices(cfg.model.arch, evaluates=cfg.eval.every == 1)
        monitors = (("trainer.monitor", trainer.monitor), ("trainer.early_stopping.monitor", stopping.monitor))
        for key, monitor in monitors:
            check(monitor in choices, f"{key}={monitor}: expected one of {', '.join(choices)}")
    check(cfg.sweep.mode in (None, "min", "max"), f"sweep.mode={cfg.sweep.mode}: expected min, max or null")
    if problems:
        raise LosslabError("invalid configuration: " + "; ".join(problems) + ".")

"""The types of every config section, as dataclasses Hydra checks at composition (a wrong key or type fails
with Hydra's own message naming it).

Each default is written once:
- in the YAML option under conf/ that chooses it (the schemas below hold types only, `MISSING`);
- loss parameters in the loss catalogue (losslab.losses.catalogue), from which the `loss/<key>/<name>`
  options and their schemas are generated here (and `loss/<key>/custom`, a user's own loss: `_target_` and any
  keys, whose defaults are its function's);
- augmentation parameters in their dataclasses (losslab.data.augment_options);
- optimizer and scheduler arguments in torch's own signatures: their YAML sets `_target_` and what losslab
  chooses, `++optimizer.NAME=VALUE` sets any other argument, and validation checks names and types against
  the signature (losslab.config.torch_arguments); losslab's own scheduler and optimizer keys in the base nodes below.

Nothing here imports torch: composing a config (tab completion, `train --help`) stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from omegaconf import MISSING

from losslab.config.data_schema import (
    CocoDataConfig,
    DataConfig,
    FolderDataConfig,
    PredefinedSplitConfig,
    RandomSplitConfig,
    ShapesDataConfig,
    SplitConfig,
    VocDataConfig,
    VocSegDataConfig,
    YoloDataConfig,
)
from losslab.data.augment_options import AugmentConfig
from losslab.losses.catalogue import CATALOGUE


@dataclass
class ModelConfig:
    arch: str = MISSING
    backbone: str = MISSING
    variant: str = MISSING
    weights: str | None = MISSING
    download: bool = MISSING
    pretrained: bool = MISSING
    freeze: Any = MISSING  # one part's name or a list of names
    trainable_backbone_layers: int | None = MISSING
    min_size: int = MISSING
    max_size: int = MISSING
    box_batch_size_per_image: int = MISSING
    rpn_post_nms_top_n_test: int = MISSING


@dataclass
class SegmentationModelConfig:
    arch: str = MISSING
    backbone: str = MISSING
    aux_loss: bool = MISSING
    pretrained: bool = MISSING
    weights: str | None = MISSING
    download: bool = MISSING
    min_size: int = MISSING
    max_size: int = MISSING


@dataclass
class SmpModelConfig:
    arch: str = MISSING
    encoder: str = MISSING
    backbone: str = MISSING  # the encoder, under the name logs, comparisons and export metadata read
    encoder_depth: int | None = MISSING
    options: dict[str, Any] = MISSING  # any other keyword argument of smp's class, checked against its signature
    weights: str | None = MISSING
    min_size: int = MISSING
    max_size: int = MISSING


@dataclass
class LossComponentConfig:
    name: str = MISSING


# `loss/<key>=custom`, a user's own loss: `_target_` names it, any other key is its keyword argument, so the node
# is a plain (open) one rather than a dataclass. Keys added on the command line take a `+` (Hydra's rule for keys
# a config does not have yet); the user's own option files (--config-dir) may add any.
CUSTOM_LOSS = {"name": "custom", "_target_": MISSING}


def loss_options() -> dict[str, dict[str, Any]]:
    """Every `loss/<key>` group's options: the catalogue's, generated with their defaults, and `custom`.
    {key: {name: schema}}."""
    options: dict[str, dict[str, Any]] = {}
    for key, losses in CATALOGUE.items():
        options[key] = {"default": make_dataclass(f"{key}_default_loss", [("name", str, field(default="default"))],
                                                  bases=(LossComponentConfig,))}
        for name, loss in losses.items():
            fields = [("name", str, field(default=name))]
            fields += [(param, Any if param == "weights" or value is None else type(value), field(default=value))
                       for param, value in loss.defaults.items()]
            options[key][name] = make_dataclass(f"{key}_{name}_loss", fields, bases=(LossComponentConfig,))
        options[key]["custom"] = dict(CUSTOM_LOSS)
    return options


@dataclass
class LossPhase:
    epochs: int = 1
    losses: dict[str, Any] = field(default_factory=dict)
    lr_factor: float = 1.0


@dataclass
class LossSchedule:
    phases: list[LossPhase] = MISSING
    cycle: bool = MISSING


@dataclass
class LossWeights:
    classification: float = MISSING
    box_regression: float = MISSING
    objectness: float = MISSING
    rpn_box_regression: float = MISSING
    mask: float = MISSING
    centerness: float = MISSING


@dataclass
class LossConfig:
    # Any, not LossComponentConfig: a `custom` option carries keys no dataclass can list. The catalogue's options
    # stay typed dataclasses (an unknown parameter or a wrong type fails at composition).
    cls: Any = MISSING
    box: Any = MISSING
    objectness: Any = MISSING
    mask: Any = MISSING
    centerness: Any = MISSING
    weights: LossWeights = field(default_factory=LossWeights)
    balance: str = MISSING
    schedule: LossSchedule = field(default_factory=LossSchedule)


@dataclass
class SegmentationLossWeights:
    pixel: float = MISSING
    aux: float = MISSING


@dataclass
class SegmentationLossConfig:
    pixel: LossComponentConfig = MISSING
    weights: SegmentationLossWeights = field(default_factory=SegmentationLossWeights)
    balance: str = MISSING
    schedule: LossSchedule = field(default_factory=LossSchedule)


# losslab's own keys beside the torch class's arguments: plain nodes, so a YAML option may add any argument.
OPTIMIZER_BASE = {
    "exempt_norm_and_bias": False,  # true: no weight decay on normalisation weights and biases
}
SCHEDULER_BASE = {
    "interval": "epoch",  # epoch: stepped after every epoch; step: after every optimizer step
    "warmup_epochs": 1.0,  # linear lr warmup, step by step, over this many epochs (0 = off)
    "warmup_factor": 0.001,  # the warmup starts at lr x warmup_factor
}


@dataclass
class EarlyStoppingConfig:
    enabled: bool = MISSING
    monitor: str = MISSING
    mode: str = MISSING
    patience: int = MISSING
    min_delta: float = MISSING


@dataclass
class TrainerConfig:
    max_epochs: int = MISSING
    device: str = MISSING
    seed: int = MISSING
    progress: bool = MISSING
    monitor: str = MISSING
    mode: str = MISSING
    checkpoints: str = MISSING  # best | last | both | none; true/false (configs written before) = both/none
    keep_resume_state: bool = MISSING
    on_extend: str = MISSING
    grad_clip_norm: float | None = MISSING
    on_nonfinite: str = MISSING
    max_skipped_batches: int = MISSING
    precision: str = MISSING
    channels_last: bool = MISSING
    compile: bool = MISSING
    cudnn_benchmark: bool = MISSING
    grad_shares: bool = MISSING
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass
class EvalConfig:
    every: int = MISSING
    score_threshold: float = MISSING
    backend: str = MISSING


@dataclass
class SweepConfig:
    rank_by: str | None = MISSING
    mode: str | None = MISSING
    repeat_key: str = MISSING
    baseline: str | None = MISSING


@dataclass
class LoggerConfig:
    backends: list[str] = MISSING
    mlflow_tracking_uri: str | None = MISSING
    mlflow_experiment: str = MISSING


@dataclass
class TrainConfig:
    task: str = MISSING
    # Each task's options bring their own schema: ModelConfig, SegmentationModelConfig or SmpModelConfig, LossConfig
    # or SegmentationLossConfig (a dataclass field has one type, so these are Any until an option is merged in).
    model: Any = MISSING
    loss: Any = MISSING
    data: DataConfig = MISSING
    split: SplitConfig = MISSING
    augment: AugmentConfig = MISSING
    optimizer: dict[str, Any] = MISSING
    scheduler: dict[str, Any] = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    run_dir: str | None = MISSING
    resume: str | None = MISSING


# ConfigStore nodes: `schema/<group>/<kind>` (YAML options extend them by name) and the generated loss options.
SCHEMAS: dict[str, Any] = {
    "schema/train": TrainConfig,
    "schema/model": ModelConfig,
    "schema/segmentation_model": SegmentationModelConfig,
    "schema/smp_model": SmpModelConfig,
    "schema/loss": LossConfig,
    "schema/segmentation_loss": SegmentationLossConfig,
    "schema/data/shapes": ShapesDataConfig,
    "schema/data/coco": CocoDataConfig,
    "schema/data/voc": VocDataConfig,
    "schema/data/folder": FolderDataConfig,
    "schema/data/voc_seg": VocSegDataConfig,
    "schema/data/yolo": YoloDataConfig,
    "schema/split/random": RandomSplitConfig,
    "schema/split/predefined": PredefinedSplitConfig,
    "schema/augment": AugmentConfig,
    "schema/optimizer/base": OPTIMIZER_BASE,
    "schema/scheduler/base": SCHEDULER_BASE,
    "schema/trainer": TrainerConfig,
    "schema/logger": LoggerConfig,
    **{f"loss/{key}/{name}": schema for key, options in loss_options().items() for name, schema in options.items()},
}

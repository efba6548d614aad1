"""`Task`: what a task (detection, semantic segmentation) decides, as one small protocol. Every method takes plain
values: config sections as dicts (`model`, `data`, `loss`, ...), built objects (a dataset, a model, a loader)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn


class Task(Protocol):
    name: str  # what `task=` names
    archs: tuple[str, ...]  # the model.arch values it trains
    model_noun: str  # what one of its models is called, for a model chosen for the other task: "a detector"
    counted: str  # what its class counts count: "objects" | "pixels"
    weights_key: str  # the loss key whose weighted_ce weighs classes: "cls" | "pixel"
    yardstick: str  # the evaluated metric trainer.monitor=auto selects epochs by when every epoch is evaluated
    predicted: str  # what `losslab predict` counts: "detections" | "masks"

    # --- configuration: problems named by key, before anything is written ---
    def config_problems(self, cfg: dict) -> list[str]:
        """What is wrong with a config of this task (model, data, augmentation), as messages."""

    def monitor_choices(self, model: dict, evaluates: bool = False) -> list[str]:
        """The metrics.csv columns a run of `model` logs every epoch (with `evaluates`, the evaluated ones too)."""

    def evaluated_metrics(self, model: dict) -> list[str]:
        """The metrics.csv columns an evaluated epoch adds (val/mAP, ...)."""

    # --- data ---
    def build_data(self, data: dict, split: dict, augment: dict | None = None) -> Any:
        """The dataset split three ways (train augmented by `augment`), with classes, split_ids and category_ids."""

    def check_data(self, model: dict, data_name: str, data: Any) -> None:
        """Refuse data (`data=data_name`) the model cannot learn from (a LosslabError), before anything is
        written."""

    def class_counts(self, data: Any) -> list[int]:
        """The train split's count of each class (objects of 1..K, or pixels of 0..K-1)."""

    def drops_lone_image(self, model: dict) -> bool:
        """Whether a last train batch of one image is left out: `model` has BatchNorm over features pooled to 1x1,
        which cannot train on one image."""

    # --- losses ---
    def loss_choices(self, loss: dict) -> tuple[dict[str, dict], dict[str, float]]:
        """A plain `loss` section as ({config key: choice}, {component: weight})."""

    def build_losses(self, model: dict, choices: dict, weights: dict, counts: list[int] | None,
                     num_classes: int) -> Any:
        """The losses the model calls, each scaled by its component's weight."""

    def check_user_losses(self, model: dict, every_choice: list[dict], num_classes: int,
                          device: torch.device) -> list:
        """The user losses (`custom`) among every phase's choices, each imported and called on a synthetic batch."""

    def reference_losses(self, model: dict) -> Any:
        """The losses of val/ref_loss: the architecture's own default loss at weight 1."""

    def reference_name(self, model: dict) -> str:
        """What val/ref_loss scores with, in words: runs are comparable by it only where this is the same."""

    def trains_reference(self, choices: dict, weights: dict, model: dict) -> bool:
        """Whether training's losses are the reference ones (then no second validation pass is needed)."""

    # --- model ---
    def build_model(self, model: dict, losses: Any, num_classes: int) -> nn.Module:
        """The model with random (or ImageNet-backbone) weights and `losses` wired in."""

    def locate_start_weights(self, model: dict) -> Path | None:
        """The weights file model.weights names, found (or fetched) before the run writes anything."""

    def load_start_weights(self, built: nn.Module, file: Path | None, model: dict) -> dict | None:
        """Load what model.weights names into a new run's model; what was loaded, or None."""

    def start_advice(self, model: dict, optimizer: dict) -> str | None:
        """A one-line warning for a start and optimizer known to diverge, or None."""

    def prepare_for_inference(self, built: nn.Module, model: dict, device: torch.device) -> None:
        """Whatever a loaded model needs before its first prediction (fixed RoI pool scales, ...)."""

    # --- evaluation and inference ---
    def metrics(self, built: nn.Module, loader, classes: Sequence[str], eval_options: dict, device: torch.device,
                progress: bool, precision: str) -> dict[str, float]:
        """The validation metrics of an evaluated epoch (without the val/ prefix)."""

    def evaluate(self, saved, data: Any, loader, header: dict, out: Path, threshold: float,
                 progress: bool) -> dict:
        """`losslab evaluate`: score a split with a saved model, write metrics.json and figures into `out`."""

    def predict(self, built: nn.Module, images: list[Tensor], threshold: float) -> list[dict[str, Tensor]]:
        """The model's outputs for a batch of images (on its device), what a user keeps."""

    def write_prediction(self, image: Tensor, output: dict[str, Tensor], saved, index: int, path: Path,
                         drawn: Path) -> list[dict]:
        """Draw one image's prediction into `drawn` (and whatever else it writes beside it); its records for
        predictions.json."""

    def exportable(self, saved, box_tolerance: float, score_tolerance: float | None) -> Any:
        """`losslab export`: the saved model in exportable form, with its sample images, metadata and the check of
        an exported file's outputs (losslab.evaluation.exporting.Exportable); `score_tolerance` None: the task's
        default tolerance."""

    def augmented_train_split(self, data: dict, split: dict, augment: dict) -> tuple[Any, dict | None, list[str]]:
        """`losslab show-augment`: the train split, the augmentation still to apply to it (None: applied by the
        split itself) and the class names."""

"""A finished run's model ready for inference: config, weights and class names, without its training data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from losslab.config.run_config import read_run_config
from losslab.config.validation import checkpoint_choice
from losslab.data.images import counted
from losslab.errors import LosslabError
from losslab.evaluation.tasks import task, task_of
from losslab.modeling.runtime import resolve_device
from losslab.modeling.weights import read_checkpoint


@dataclass
class SavedModel:
    """A run's model in eval mode on `device`, with what inference needs to know about it."""

    cfg: dict  # the run's config, resolved to plain values
    model: nn.Module
    classes: list[str]  # detection: object class names, label k (1..K) is classes[k - 1]; segmentation: index k
    category_ids: list[int]  # the dataset's category id of label k is category_ids[k - 1]
    epoch: int
    checkpoint: Path
    device: torch.device
    task: str = "detection"  # detection | segmentation


def load_saved_model(run_dir: Path, checkpoint: str = "best", device: str = "auto") -> SavedModel:
    """The model of `run_dir` with the weights of checkpoints/<checkpoint>.pt, in eval mode on `device`.

    Class names come from the checkpoint (key "classes") or else from the run's summary.json, so the
    training dataset is not needed.
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    path = checkpoint_path(run_dir, checkpoint, cfg)
    state = read_checkpoint(path)
    classes = class_names(run_dir, state)
    model = task(cfg).build_model(cfg["model"], inference_losses(cfg, len(classes)), len(classes))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:  # the config and the weights describe different models
        raise LosslabError(f"checkpoint {path} does not fit the model in {run_dir / '.hydra' / 'config.yaml'} "
                           f"with {counted(len(classes), 'class', 'classes')}: {error}") from error
    target = resolve_device(device, key="--device")
    model = model.to(target).eval()
    settle_roi_pool_scales(model, cfg["model"]["min_size"], target)
    # Runs from before checkpoints kept category ids: their labels were the ids.
    category_ids = [int(i) for i in state.get("category_ids") or range(1, len(classes) + 1)]
    return SavedModel(cfg, model, classes, category_ids, int(state["epoch"]), path, target, task_of(cfg))


def checkpoint_path(run_dir: Path, checkpoint: str, cfg: dict | None = None) -> Path:
    """checkpoints/<checkpoint>.pt of the run; a missing one is an error that says which checkpoints the run
    keeps (its trainer.checkpoints, from `cfg`) and how to get the one asked for."""
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if path.is_file():
        return path
    there = sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt"))
    choice = checkpoint_choice((cfg or {}).get("trainer", {}).get("checkpoints", "both"))
    other = "best" if checkpoint == "last" else "last"
    if choice == "none":
        why = ("the run kept no checkpoint (trained with trainer.checkpoints=none); train it again with "
               "trainer.checkpoints=best (the default) to keep its best weights")
    elif choice in ("best", "last") and choice != checkpoint:
        why = (f"the run keeps only {choice}.pt (trainer.checkpoints={choice}): use --checkpoint {choice}, or train "
               f"with trainer.checkpoints={checkpoint} or both to keep {checkpoint}.pt")
    elif there:
        why = f"it has {', '.join(p + '.pt' for p in there)} (use --checkpoint {other})"
    else:
        why = "it has none yet: the run has not finished an epoch, or was stopped before it did"
    raise LosslabError(f"checkpoint {path} does not exist; {why}.")


def class_names(run_dir: Path, state: dict) -> list[str]:
    """The object class names, in label order: from the checkpoint, else from summary.json."""
    if state.get("classes"):
        return [str(name) for name in state["classes"]]
    summary_path = run_dir / "summary.json"
    try:
        classes = json.loads(summary_path.read_text()).get("classes")
    except (OSError, ValueError):
        classes = None
    if not classes:
        raise LosslabError(f"no class names for {run_dir}: neither its checkpoint nor {summary_path} lists "
                           "'classes' (a list of names, written by train when a run ends).")
    return [str(name) for name in classes]


def settle_roi_pool_scales(model: nn.Module, size: int, device: torch.device) -> None:
    """Fix the R-CNN RoI pools' feature-map scales on a blank `size` square image.

    torchvision's MultiScaleRoIAlign infers those scales from the first images it sees and keeps them. A first image
    much wider than tall (resized height far below the padded height) gives wrong ones, and every later prediction
    would depend on which image came first; an exported model would carry them too. Only the backbone runs here.
    """
    if not hasattr(model, "roi_heads"):
        return  # RetinaNet pools nothing
    with torch.inference_mode():
        batch, _ = model.transform([torch.zeros(3, size, size, device=device)])
        features = model.backbone(batch.tensors)
        no_boxes = [torch.zeros(0, 4, device=device)]
        for pool in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
            if pool is not None:
                pool(features, no_boxes, batch.image_sizes)


def inference_losses(cfg: dict, num_classes: int):
    """The run's training losses, which the model holds but inference never calls.

    weighted_ce with automatic weights needs the train split's class counts to be built: placeholder ones stand
    in for them, as losses cannot change a prediction. A user loss (`custom`) is never imported here: the default
    stands in for it, so a run folder's config cannot choose what inference imports.
    """
    kind = task(cfg)
    choices, weights = kind.loss_choices(cfg["loss"])
    choices = {key: {"name": "default"} if choice.get("name") == "custom" else choice
               for key, choice in choices.items()}
    counts = [1] * num_classes if kind.needs_class_counts([choices]) else None
    return kind.build_losses(cfg["model"], choices, weights, counts, num_classes)

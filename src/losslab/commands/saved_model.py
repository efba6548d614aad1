"""A finished run's model ready for inference: config, weights and class names, without its training data (what
`losslab evaluate`, `predict` and `export` start from)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from losslab.config.plan import checkpoint_choice
from losslab.config.run_config import read_run_config
from losslab.data.images import counted
from losslab.errors import LosslabError
from losslab.modeling.runtime import resolve_device
from losslab.modeling.weights import read_checkpoint
from losslab.tasks import Task, task_of


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
    task: Task


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
    task = task_of(cfg)
    model = task.build_model(cfg["model"], inference_losses(task, cfg), len(classes))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:  # the config and the weights describe different models
        raise LosslabError(f"checkpoint {path} does not fit the model in {run_dir / '.hydra' / 'config.yaml'} "
                           f"with {counted(len(classes), 'class', 'classes')}: {error}") from error
    target = resolve_device(device, key="--device")
    model = model.to(target).eval()
    task.prepare_for_inference(model, cfg["model"], target)
    # Runs from before checkpoints kept category ids: their labels were the ids.
    category_ids = [int(i) for i in state.get("category_ids") or range(1, len(classes) + 1)]
    return SavedModel(cfg, model, classes, category_ids, int(state["epoch"]), path, target, task)


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


def inference_losses(task: Task, cfg: dict):
    """Losses for the model's heads to hold, which inference never calls: the architecture's defaults at weight 1
    (its reference losses). The run's own are not built: a user loss would be imported (a run folder's config must
    not choose what inference imports), automatic class weights would need the training data, and a loss parameter
    a later losslab checks more strictly must not stop an older run from loading."""
    return task.reference_losses(cfg["model"])

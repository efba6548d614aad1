"""A plan in, objects out: the data, loaders and model a validated run describes (the pieces `run` starts from,
and the public Python API's, see losslab/__init__.py); what differs between the tasks comes from the plan's task."""

from __future__ import annotations

from torch import nn
from torch.utils.data import DataLoader

from losslab.config.plan import Plan
from losslab.data.loaders import make_loaders
from losslab.distributed import World, launched_world
from losslab.losses.components import needs_class_counts
from losslab.modeling.runtime import resolve_device


def build_data(plan: Plan):
    """The planned dataset, split and augmented (train split only).

    Bad data raises a LosslabError here, before split.json or anything else of the run is written.
    """
    sections = plan.sections
    data = plan.task.build_data(sections["data"], sections["split"], sections["augment"])
    plan.task.check_data(plan.model, sections["data"]["name"], data)
    return data


def build_dataloaders(plan: Plan, data=None, world: World | None = None) -> dict[str, DataLoader]:
    """{"train", "val", "test"} DataLoaders yielding (images, targets) as torchvision expects;
    under torchrun each process loads its share of every split."""
    data = data or build_data(plan)
    world = world or launched_world()
    device = resolve_device(plan.device, world)
    loader_options = plan.sections["data"]
    return make_loaders(data, loader_options["batch_size"], loader_options["num_workers"], seed=plan.seed,
                        pin_memory=device.type == "cuda", world=world,
                        drop_lone_image=plan.task.drops_lone_image(plan.model))


def build_model(plan: Plan, num_classes: int | None = None, class_counts: list[int] | None = None,
                start: bool = True) -> nn.Module:
    """The planned model with its losses wired in: a detector, or a segmenter with task=segmentation; with `start`,
    the weights model.weights names loaded (head surgery fits them to the number of classes).

    `num_classes` counts the dataset's classes (detection: object classes, background excluded; segmentation:
    pixel classes, background included) and `class_counts` the train split's objects (segmentation: pixels) of
    each class, what weighted_ce's automatic weights need; both are read from the planned dataset when not given.
    """
    task = plan.task
    needs_counts = needs_class_counts([plan.loss_choices])
    if num_classes is None or (class_counts is None and needs_counts):
        data = build_data(plan)
        num_classes = len(data.classes)
        if needs_counts:
            class_counts = task.class_counts(data)
    losses = task.build_losses(plan.model, plan.loss_choices, plan.loss_weights, class_counts, num_classes)
    model = task.build_model(plan.model, losses, num_classes)
    if start:
        task.load_start_weights(model, task.locate_start_weights(plan.model), plan.model)
    return model

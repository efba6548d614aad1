"""`losslab show-augment`: a PNG grid of augmented training samples, so users see what the model sees.

Every sample is drawn with its translucent masks, its boxes and their class names (task=segmentation: its class
mask and a legend), scaled so its longer side fills a square cell (smaller images become readable, other shapes
are padded), in a grid of `columns` cells.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.image import imsave
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.utils import make_grid

from losslab.config.validation import plan_of
from losslab.data.mixing import augmented
from losslab.data.transforms import JointTransform
from losslab.reporting.drawing import draw_objects
from losslab.reporting.segmentation_figures import draw_class_mask

log = logging.getLogger(__name__)

PADDING = 2  # pixels between cells (make_grid's default)


def show_augment(dataset: Dataset, options: dict | None, out_path: Path, samples: int = 8, seed: int = 0,
                 classes: Sequence[str] | None = None, columns: int = 4, cell_size: int = 256) -> Path:
    """Write `samples` augmented items of `dataset` (the un-augmented train split) as a PNG grid to `out_path`.

    `options` is the `augment` section as a plain dict (None: `dataset` is augmented already, task=segmentation's
    train split). The samples and their augmentations depend only on `seed`: the same seed draws the same grid,
    and the caller's random state is left as it was. `classes` names labels 1, 2, ... (segmentation: indices 0, 1,
    ...; default: `dataset.classes`).
    """
    classes = list(dataset.classes if classes is None else classes)
    view = dataset if options is None else augmented(dataset, options)
    draw = draw_sample if options is not None else draw_segmentation_sample
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        order = torch.randperm(len(view)).tolist()
        cells = [draw(*view[order[k % len(order)]], classes, cell_size) for k in range(samples)]
    grid = make_grid(cells, nrow=min(columns, samples), padding=PADDING, pad_value=255)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    imsave(out_path, grid.permute(1, 2, 0).numpy())
    log.info("wrote %d augmented samples to %s", samples, out_path)
    return out_path


def draw_sample(image: torch.Tensor, target: dict, classes: Sequence[str], cell_size: int) -> torch.Tensor:
    """One cell: the sample scaled to fit `cell_size`, masks and named boxes drawn, padded to a square uint8 image."""
    image, target = JointTransform(v2.Resize(None, max_size=cell_size))(image, target)
    labels = target["labels"].tolist()
    names = [label_name(label, classes) for label in labels]
    masks = target["masks"].bool() if "masks" in target else None
    canvas = draw_objects(F.to_dtype(image, torch.uint8, scale=True), target["boxes"], labels, names, masks)
    height, width = canvas.shape[-2:]
    return F.pad(canvas, [0, 0, cell_size - width, cell_size - height], fill=255)


def draw_segmentation_sample(image: torch.Tensor, target: dict, classes: Sequence[str], cell_size: int
                             ) -> torch.Tensor:
    """One cell of task=segmentation: the sample's classes drawn over it with a legend, the drawing scaled to fit
    `cell_size` and padded to a square uint8 image."""
    canvas = draw_class_mask(F.to_dtype(image, torch.uint8, scale=True), target["mask"], list(classes))
    canvas = v2.Resize(None, max_size=cell_size)(canvas)
    height, width = canvas.shape[-2:]
    return F.pad(canvas, [0, 0, cell_size - width, cell_size - height], fill=255)


def label_name(label: int, classes: Sequence[str]) -> str:
    """The class name of a 1-based label, or the number itself when `classes` does not name it."""
    return classes[label - 1] if 1 <= label <= len(classes) else str(label)



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="train overrides, e.g. augment=strong data=coco data.images=DIR")
    parser.add_argument("--out", type=Path, default=Path("augment.png"), help="the PNG to write (default augment.png)")
    parser.add_argument("--samples", type=int, default=8, help="how many samples to draw (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed draws the same augmentations")


def main(args: argparse.Namespace) -> int:
    print(draw_augmentations(args.overrides, args.out, args.samples, args.seed))
    return 0


def draw_augmentations(overrides: list[str], out: Path, samples: int, seed: int) -> Path:
    """The configured train split, augmented as `train` would augment it, drawn into `out`."""
    plan = plan_of(overrides)
    sections = plan.sections
    train, augment, classes = plan.task.augmented_train_split(sections["data"], sections["split"], sections["augment"])
    return show_augment(train, augment, out, samples, seed, classes)

"""Figures of task=segmentation: a class mask over its image with a legend (predict), the masks as palette PNGs
whose pixel values are the class indices, and the per-class IoU bar chart (evaluate)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import draw_segmentation_masks

from losslab.reporting.curves import _save, new_figure
from losslab.reporting.drawing import CLASS_COLOURS, MASK_ALPHA

BACKGROUND_COLOUR = (0, 0, 0)
LEGEND_ROW = 14  # pixels per legend line


def class_colour(index: int) -> tuple[int, int, int]:
    """Class 0 (background) black, class k the detection drawings' colour of label k: one colour per class."""
    return BACKGROUND_COLOUR if index == 0 else CLASS_COLOURS[(index - 1) % len(CLASS_COLOURS)]


def draw_class_mask(image: torch.Tensor, mask: torch.Tensor, classes: list[str]) -> torch.Tensor:
    """The uint8 [3, H, W] `image` with every non-background class of `mask` ([H, W] indices) translucent in its
    colour, and below it a legend naming the classes present with their share of the pixels."""
    present = [int(c) for c in torch.unique(mask).tolist() if 0 < c < len(classes)]
    overlay = image
    if present:
        regions = torch.stack([mask == c for c in present])
        overlay = draw_segmentation_masks(image, regions, alpha=MASK_ALPHA, colors=[class_colour(c) for c in present])
    return _with_legend(overlay, [(c, classes[c], float((mask == c).float().mean())) for c in present])


def _with_legend(image: torch.Tensor, entries: list[tuple[int, str, float]]) -> torch.Tensor:
    height, width = image.shape[-2:]
    canvas = Image.new("RGB", (width, height + LEGEND_ROW * max(1, len(entries)) + 4), (255, 255, 255))
    canvas.paste(Image.fromarray(image.permute(1, 2, 0).numpy()), (0, 0))
    draw = ImageDraw.Draw(canvas)
    if not entries:
        draw.text((4, height + 2), "background only", fill=(0, 0, 0))
    for row, (index, name, share) in enumerate(entries):
        top = height + 2 + row * LEGEND_ROW
        draw.rectangle((4, top + 2, 14, top + 12), fill=class_colour(index))
        draw.text((18, top + 1), f"{name} {share:.1%}", fill=(0, 0, 0))
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).contiguous()


def save_index_png(mask: torch.Tensor, num_classes: int, path: Path) -> None:
    """`mask` ([H, W] class indices) as a palette PNG: the pixel values are the indices (read them with any image
    library), the palette shows each class in its colour."""
    image = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P")
    palette = [value for index in range(256) for value in (class_colour(index) if index < num_classes else (0, 0, 0))]
    image.putpalette(palette)
    image.save(path)


def plot_class_iou(metrics: dict[str, float], path: Path) -> Path:
    """IoU of every class (horizontal bars), with the mIoU as a line; classes without an IoU are shown as n/a."""
    names = [key.removeprefix("IoU/") for key in metrics if key.startswith("IoU/")]
    values = [metrics[f"IoU/{name}"] for name in names]
    fig = new_figure(figsize=(6, 1 + 0.35 * len(names)), layout="constrained")
    ax = fig.subplots()
    shown = [0.0 if math.isnan(v) else v for v in values]
    ax.barh(names, shown, color=[np.array(class_colour(i)) / 255 if i else "tab:gray" for i in range(len(names))])
    for row, value in enumerate(values):
        ax.text(min(value, 0.85) + 0.01 if not math.isnan(value) else 0.01, row,
                "n/a" if math.isnan(value) else f"{value:.3f}", va="center", fontsize=8)
    ax.axvline(metrics["mIoU"], color="black", linestyle="--", linewidth=1, label=f"mIoU {metrics['mIoU']:.3f}")
    ax.set(xlim=(0, 1), xlabel="IoU", title="IoU per class")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)

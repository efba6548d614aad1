"""Figures of task=segmentation: a class mask over its image with a legend (predict), the masks as palette PNGs
whose pixel values are the class indices, and the per-class IoU bar chart (evaluate)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from losslab.reporting.curves import _save, new_figure
from losslab.reporting.drawing import CLASS_COLOURS, FONT, draw_masks, drawing_sizes, regions

BACKGROUND_COLOUR = (0, 0, 0)


def class_colour(index: int) -> tuple[int, int, int]:
    """Class 0 (background) black, class k the detection drawings' colour of label k: one colour per class."""
    return BACKGROUND_COLOUR if index == 0 else CLASS_COLOURS[(index - 1) % len(CLASS_COLOURS)]


def draw_class_mask(image: torch.Tensor, mask: torch.Tensor, classes: list[str]) -> torch.Tensor:
    """The uint8 [3, H, W] `image` with every non-background class of `mask` ([H, W] indices) tinted in its colour
    and edged by a line that shows on any background (see draw_masks), and below it a legend naming the classes
    present with their share of the pixels; lines and letters grow with the image as the detection drawings do."""
    present = [int(c) for c in torch.unique(mask).tolist() if 0 < c < len(classes)]
    line_width, font_size = drawing_sizes(*image.shape[-2:])
    overlay = draw_masks(image, regions(mask == c for c in present), [class_colour(c) for c in present], line_width)
    return _with_legend(overlay, [(c, classes[c], float((mask == c).float().mean())) for c in present], font_size)


def _with_legend(image: torch.Tensor, entries: list[tuple[int, str, float]], font_size: int) -> torch.Tensor:
    """`image` above a white legend: one line per entry, a swatch of its class's colour and "name share"."""
    height, width = image.shape[-2:]
    row, margin = round(font_size * 1.4), max(2, font_size // 4)
    canvas = Image.new("RGB", (width, height + row * max(1, len(entries)) + 2 * margin), (255, 255, 255))
    canvas.paste(Image.fromarray(image.permute(1, 2, 0).numpy()), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.truetype(str(FONT), font_size)
    if not entries:
        draw.text((margin, height + margin), "background only", fill=(0, 0, 0), font=font)
    for line, (index, name, share) in enumerate(entries):
        top = height + margin + line * row
        draw.rectangle((margin, top + 1, margin + font_size, top + font_size + 1), fill=class_colour(index),
                       outline=(0, 0, 0))
        draw.text((2 * margin + font_size, top), f"{name} {share:.1%}", fill=(0, 0, 0), font=font)
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

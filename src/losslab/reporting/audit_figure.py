"""data_audit.png: a dataset's audit at a glance. Left, the objects (class masks: pixels) of each class per split;
right, every box's side against its aspect ratio with COCO's small/medium/large boundaries, and a histogram of
the image widths and heights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from losslab.reporting.curves import _save, new_figure

SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
SIZE_BOUNDARIES = (32, 96)  # COCO's small | medium | large, as a box side sqrt(area) in pixels
FEW_SIZES = 8  # up to this many distinct image sizes get a bar each
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")  # 20, 0.5 on the log axes, not 2x10^1


def plot_audit(numbers: dict, points: dict, path: Path) -> Path:
    """Save audit_figure(...) to `path`."""
    return _save(audit_figure(numbers, points), path)


def audit_figure(numbers: dict, points: dict) -> Figure:
    """`numbers`: losslab.data.audit.audit's; `points`: its figure_points (per split, boxes as (side, aspect) rows
    and images as (width, height) rows)."""
    classes = numbers["classes"]
    fig = new_figure(figsize=(12, max(5.0, 1.5 + 0.25 * len(classes) * 1.3)), layout="constrained")
    axes = fig.subplot_mosaic([["classes", "boxes"], ["classes", "images"]], width_ratios=[1, 1.2])
    _class_bars(axes["classes"], numbers)
    _box_scatter(axes["boxes"], points)
    _image_sizes(axes["images"], points)
    totals = ", ".join(f"{name} {split['images']}" for name, split in numbers["splits"].items())
    fig.suptitle(f"data audit: images {totals}; {numbers['leaks']['images']} in two splits")
    return fig


def _class_bars(ax, numbers: dict) -> None:
    """Horizontal bars, one group per class (the first class on top), one bar per split."""
    unit, classes, splits = numbers["unit"], numbers["classes"], numbers["splits"]
    height = 0.8 / max(len(splits), 1)
    rows = np.arange(len(classes))
    for k, (name, split) in enumerate(splits.items()):
        amounts = [entry[unit] for entry in split["classes"]]
        ax.barh(rows + k * height, amounts, height=height, label=name, color=SPLIT_COLOURS.get(name))
    ax.set_yticks(rows + height * (len(splits) - 1) / 2, classes)
    ax.invert_yaxis()
    train = splits.get("train", {})
    ratio = train.get("imbalance_ratio")
    ax.set(xlabel=unit, title=f"{unit} per class" + (f" (train imbalance {ratio:.3g}:1)" if ratio else ""))
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _box_scatter(ax, points: dict) -> None:
    """Box side sqrt(w h) against aspect w / h, both on log scales, with COCO's size boundaries."""
    drawn = False
    for name, split in points.items():
        boxes = split["boxes"]
        if len(boxes):
            ax.scatter(boxes[:, 0], boxes[:, 1], s=4, alpha=0.4, label=name, color=SPLIT_COLOURS.get(name),
                       edgecolors="none")
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no boxes (class masks)", ha="center", va="center", transform=ax.transAxes)
        ax.set(title="boxes", xticks=[], yticks=[])
        return
    for side, label in zip(SIZE_BOUNDARIES, ("small | medium", "medium | large"), strict=True):
        ax.axvline(side, color="gray", linestyle="--", linewidth=1)
        ax.annotate(label, (side, 1), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=7, color="gray")
    ax.set(xscale="log", yscale="log", xlabel="box side sqrt(w h), px", ylabel="aspect ratio w / h",
           title="box size and aspect")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        axis.set_major_formatter(PLAIN)
        axis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8, markerscale=3)
    ax.grid(alpha=0.3, which="both")


def _image_sizes(ax, points: dict) -> None:
    """How many images have each size (every split together): one bar per size when there are a few, else
    histograms of the widths and heights."""
    images = np.concatenate([split["images"] for split in points.values()]).reshape(-1, 2)
    sizes, counts = np.unique(images, axis=0, return_counts=True)
    if len(sizes) <= FEW_SIZES:
        order = np.argsort(-counts, kind="stable")
        ax.bar([f"{width}x{height}" for width, height in sizes[order]], counts[order], color="tab:purple")
        ax.set(xlabel="width x height, px", ylabel="images", title="image sizes")
    else:
        ax.hist([images[:, 0], images[:, 1]], bins=30, label=["width", "height"], color=["tab:purple", "tab:gray"])
        ax.set(xlabel="pixels", ylabel="images", title="image width and height")
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

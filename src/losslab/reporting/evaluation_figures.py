"""Figures of `losslab evaluate`: precision-recall curves and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from losslab.reporting.curves import _save, new_figure
from losslab.reporting.drawing import text_colour


def plot_pr_curves(curves: dict[str, tuple[list[float], list[float]]], path: Path) -> Path:
    """Precision over recall at IoU 0.5 for every class (COCOeval's interpolated curves) and their mean."""
    fig = new_figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    precisions = []
    for name, (recall, precision) in curves.items():
        ax.plot(recall, precision, label=name)
        precisions.append(precision)
    if precisions:
        recall = next(iter(curves.values()))[0]
        mean = [sum(values) / len(values) for values in zip(*precisions, strict=True)]
        ax.plot(recall, mean, color="black", linewidth=2.5, label="mean")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(matrix, names: list[str], path: Path) -> Path:
    """Save confusion_matrix_figure(...) to `path`."""
    return _save(confusion_matrix_figure(matrix, names), path)


def confusion_matrix_figure(matrix, names: list[str]) -> Figure:
    """Counts and row-normalised rates (true class by predicted class, background included); each number in
    black or white, whichever reads on its cell."""
    fig = new_figure(figsize=(5 + 1.2 * len(names), 2.5 + 0.5 * len(names)), layout="constrained")
    axes = fig.subplots(1, 2)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = matrix / totals.clip(min=1)
    for ax, values, title, fmt in ((axes[0], matrix, "counts", "d"), (axes[1], normalised, "normalised by true class",
                                                                        ".2f")):
        cells = ax.imshow(values, cmap="Blues")
        for (row, column), value in np.ndenumerate(values):
            ax.text(column, row, format(value, fmt), ha="center", va="center", fontsize=8,
                    color=text_colour(cells.cmap(cells.norm(value))))
        ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true", title=title)
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_yticklabels(names)
    return fig

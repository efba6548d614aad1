"""Loss-curve figures: one run's train/val curves per component, a sweep's runs (or groups of repeated runs)
overlaid, and the groups' statistics.

Drawn with matplotlib's object API (a Figure on its own Agg canvas), never pyplot: pyplot keeps global state (open
figures, a backend chosen on import) that a run drawing its curves every epoch, or a test process, must not share.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import NamedTuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TABLEAU_COLORS
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from losslab.losses.catalogue import COMPONENTS
from losslab.reporting.comparison import job_order

TRAIN_STYLE = {"color": "tab:blue", "marker": "o", "markersize": 3}
VAL_STYLE = {"color": "tab:orange", "marker": "o", "markersize": 3}
METRIC_LINES = ("val/mAP", "val/mAP50", "val/mask_mAP", "val/F1", "val/mIoU", "val/mDice", "val/pixel_accuracy")
REF_STYLE = {"color": "tab:gray", "linestyle": "--", "marker": ".", "markersize": 3}
PALETTE = tuple(TABLEAU_COLORS)  # tab:blue, tab:orange, ... : matplotlib's default cycle, by name
SWEEP_STYLES = ("-", "--", ":", "-.")  # a figure holding runs of several sweeps: one line style per sweep
SHADED, BARRED = "shaded: min-max over the group's runs", "error bar: min-max over the group's runs at its one epoch"
GRAD_SHARE = "train/grad_share/"  # + component: each component's share of the gradient at the shared features
GRAD_SHARE_TITLE = "gradient share at the features"
SWEEP_TITLES = {"val/loss": "val/loss (each run's training objective)",
                "val/ref_loss": "val/ref_loss (loss=default: comparable across runs)"}


def _series(rows: list[dict], column: str) -> tuple[list[int], list[float]]:
    """Epochs and finite values of `column` (non-finite values break the line instead of the axes)."""
    points = [(r["epoch"], r[column]) for r in rows if isinstance(r.get(column), float)]
    return [e for e, _ in points], [v if math.isfinite(v) else math.nan for _, v in points]


def plot_loss_curves(rows: list[dict], path: Path, title: str = "", best_epoch: int | None = None) -> Path:
    """Save loss_curves_figure(...) to `path`."""
    return _save(loss_curves_figure(rows, title, best_epoch), path)


def loss_curves_figure(rows: list[dict], title: str = "", best_epoch: int | None = None) -> Figure:
    """Total train vs val loss, then one panel per component present, the val metrics and the gradient shares
    (each where its columns exist), then the learning rate."""
    epochs = [r["epoch"] for r in rows]
    panels = ["loss"] + [c for c in COMPONENTS if any(f"train/{c}" in r or f"val/{c}" in r for r in rows)]
    # Panels of one line per column: {title: {column: label}}, each drawn only where its columns exist.
    lines = {"val metrics": {m: m.removeprefix("val/") for m in METRIC_LINES if any(m in r for r in rows)},
             GRAD_SHARE_TITLE: {c: c.removeprefix(GRAD_SHARE) for c in dict.fromkeys(
                 k for r in rows for k in r if k.startswith(GRAD_SHARE))}}
    panels += [title for title, columns in lines.items() if columns]
    has_lr = any("lr" in r for r in rows)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols) + (1 if has_lr else 0)
    heights = [3] * math.ceil(len(panels) / ncols) + ([1.3] if has_lr else [])
    # Margins fixed in inches rather than a layout engine: constrained layout doubles the cost of drawing the
    # figure, which a run redraws after every epoch.
    size = (4.2 * ncols, sum(heights) + 0.6 + (0.3 if title else 0.0))
    fig = new_figure(figsize=size)
    grid = fig.add_gridspec(nrows, ncols, height_ratios=heights, **_margins(size, nrows, ncols, bool(title)))
    for i, name in enumerate(panels):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        if name in lines:
            for column, label in lines[name].items():
                ax.plot(*_series(rows, column), marker="o", markersize=3, label=label)
            ax.set_title(name)
            ax.legend(fontsize=7)
            _epoch_axis(ax, epochs)
            continue
        for split, style in (("train", TRAIN_STYLE), ("val", VAL_STYLE)):
            epochs, values = _series(rows, f"{split}/{name}")
            if epochs:
                ax.plot(epochs, values, label=split, **style)
        if name == "loss" and any(r.get("val/ref_loss") != r.get("val/loss") for r in rows):
            ax.plot(*_series(rows, "val/ref_loss"), label="val, loss=default", **REF_STYLE)
        _shade_phases(ax, rows)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", linestyle=":", linewidth=1, label=f"best (epoch {best_epoch})")
        ax.set_title("total loss" if name == "loss" else name.replace("_", " "))
        _epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    if has_lr:
        ax = fig.add_subplot(grid[-1, :])
        epochs, values = _series(rows, "lr")
        ax.plot(epochs, values, color="tab:green", marker=".", drawstyle="steps-post")
        ax.set_ylabel("lr")
        _epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def sweep_columns(rank_by: str) -> tuple[str, ...]:
    """The panels of a sweep's figure: each run's own val loss, the reference loss and the ranking metric
    (train loss when the ranking metric is one of the first two)."""
    return ("val/loss", "val/ref_loss", rank_by if rank_by not in ("val/loss", "val/ref_loss") else "train/loss")


def _margins(size: tuple[float, float], nrows: int, ncols: int, titled: bool, legend: float = 0.0) -> dict[str, float]:
    """GridSpec margins and gaps leaving room (in inches) for tick labels, axis labels, panel titles, the
    figure's title and a legend `legend` inches high below the panels."""
    left, right, bottom, top, gap = 0.95, 0.2, 0.5 + legend, 0.35 + (0.35 if titled else 0.0), 0.8
    width, height = size
    axes_width = (width - left - right - gap * (ncols - 1)) / ncols
    axes_height = (height - bottom - top - gap * (nrows - 1)) / nrows
    return {"left": left / width, "right": 1 - right / width, "bottom": bottom / height, "top": 1 - top / height,
            "wspace": gap / axes_width, "hspace": gap / axes_height}


class Curve(NamedTuple):
    """A line of a sweep figure: its label, the metrics.csv rows of each run it stands for (their mean is drawn),
    and the run folder whose identity picks its colour (a job, or a group's first job; None: its place)."""

    label: str
    runs: list[list[dict]]
    folder: Path | None = None


def plot_sweep_curves(groups: list[Curve], path: Path, columns=("val/loss", "train/loss"), note: str | None = None
                      ) -> Path:
    """Save sweep_figure(...) to `path`."""
    return _save(sweep_figure(groups, columns, note), path)


def sweep_figure(groups: list[Curve], columns=("val/loss", "train/loss"), note: str | None = None) -> Figure:
    """`columns` over epochs, one panel per column, one line per Curve (or (label, runs) pair): a single run's
    values, or the mean over the group's runs with their min-max range shaded (an error bar where the column has
    one epoch only, which a shade cannot show). Colours and line styles: curve_styles. `note` (a warning that
    the runs are not comparable) is written in red above the panels."""
    curves = [Curve(*group) for group in groups]
    styles = curve_styles([curve.folder for curve in curves])
    size = (6 * len(columns), 4.5)
    fig = new_figure(figsize=size)  # margins set below, not a layout engine: see loss_curves_figure
    axes = fig.subplots(1, len(columns), squeeze=False)
    ranges = set()  # how min-max ranges were drawn: SHADED, BARRED
    for ax, column in zip(axes[0], columns, strict=True):
        for (label, runs, _), style in zip(curves, styles, strict=True):
            epochs, mean, low, high = _band(runs, column)
            if not epochs:
                continue
            ax.plot(epochs, mean, marker="o", markersize=3, **style,
                    label=label if len(runs) == 1 else f"{label} (mean of {len(runs)})")
            if len(runs) > 1 and len(epochs) > 1:
                ax.fill_between(epochs, low, high, color=style["color"], alpha=0.2, linewidth=0)
                ranges.add(SHADED)
            elif len(runs) > 1:
                ax.errorbar(epochs, mean, yerr=[[mean[0] - low[0]], [high[0] - mean[0]]], fmt="none",
                            ecolor=style["color"], alpha=0.6, capsize=4)
                ranges.add(BARRED)
        ax.set_title(SWEEP_TITLES.get(column, column))
        _epoch_axis(ax, [row["epoch"] for curve in curves for rows in curve.runs for row in rows])
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for text in (SHADED, BARRED):  # promised only where drawn
        if text in ranges:
            handles.append(Patch(color="gray", alpha=0.2 if text == SHADED else 0.6, label=text))
            labels.append(text)
    legend_columns = min(3, len(labels))
    legend = 0.1 + 0.22 * math.ceil(len(labels) / legend_columns) if labels else 0.0  # inches
    size = (size[0], size[1] + legend)  # the panels keep their height however many runs there are
    fig.set_size_inches(size)
    fig.subplots_adjust(**_margins(size, 1, len(columns), note is not None, legend))
    _warn(fig, note)
    if handles:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.01), fontsize=8, ncols=legend_columns)
    return fig


def curve_styles(folders: list[Path | None]) -> list[dict]:
    """Each line's colour and line style from the run folder it stands for, not its place in the list, so that a
    run looks the same in its sweep's figure and in every comparison: job N of a sweep takes colour N of the 10,
    any other folder the colour a checksum of its name picks. In a figure holding runs of several sweeps (parent
    folders) each sweep has its own line style (in the order of their paths), so job 2 of sweep A and job 2 of
    sweep B share a colour but not a style. Two lines of one sweep that would share a colour (more than 10 jobs,
    or checksums that meet) cannot both keep it: the later job takes the next free colour. A line without a
    folder is coloured by its place."""
    resolved = [None if folder is None else Path(folder).resolve() for folder in folders]
    sweeps = sorted({str(folder.parent) for folder in resolved if folder is not None})
    styles: list[dict] = [{"color": PALETTE[i % len(PALETTE)], "linestyle": "-"} for i in range(len(folders))]
    taken: dict[str, set[int]] = {}
    placed = sorted((folder, i) for i, folder in enumerate(resolved) if folder is not None)
    for folder, i in sorted(placed, key=lambda pair: job_order(pair[0])):
        used = taken.setdefault(str(folder.parent), set())
        color = _preferred_color(folder.name)
        while color in used and len(used) < len(PALETTE):
            color = (color + 1) % len(PALETTE)
        used.add(color)
        styles[i] = {"color": PALETTE[color],
                     "linestyle": SWEEP_STYLES[sweeps.index(str(folder.parent)) % len(SWEEP_STYLES)]}
    return styles


def _preferred_color(name: str) -> int:
    """A palette index from a folder's name: a job number itself, any other name a checksum (stable across
    processes, unlike hash())."""
    return (int(name) if name.isdigit() else zlib.crc32(name.encode())) % len(PALETTE)


def _band(runs: list[list[dict]], column: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs where some run has a finite `column`, and the mean, min and max over those runs' values."""
    by_epoch: dict[int, list[float]] = {}
    for rows in runs:
        for epoch, value in zip(*_series(rows, column), strict=True):
            if math.isfinite(value):
                by_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(by_epoch)
    return (epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs], [min(by_epoch[e]) for e in epochs],
            [max(by_epoch[e]) for e in epochs])


def plot_group_statistics(rows: list[dict], mode: str, path: Path, note: str | None = None) -> Path:
    """Save statistics_figure(...) to `path`."""
    return _save(statistics_figure(rows, mode, note), path)


def statistics_figure(rows: list[dict], mode: str, note: str | None = None) -> Figure:
    """Each group's mean ranking metric with its 95% interval (best group on top), each run's value as a dot,
    in the group's colour of the sweep's curves (its "folder", see curve_styles), the baseline's mean as a black
    dashed line, each verdict on the right. `rows` are losslab.reporting.repeats' group rows."""
    metric = rows[0]["rank_by"]
    fig = new_figure(figsize=(8, 1.2 + 0.5 * len(rows)), layout="constrained")
    ax = fig.subplots()
    colors = [style["color"] for style in curve_styles([row.get("folder") for row in reversed(rows)])]
    for y, (row, color) in enumerate(zip(reversed(rows), colors, strict=True)):
        ax.plot(row["values"], [y] * len(row["values"]), "o", color=color, alpha=0.35, markersize=5)
        if row["mean"] is None:
            continue
        interval = None if row["ci_low"] is None else [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
        ax.errorbar(row["mean"], y, xerr=interval, fmt="D", color=color, capsize=4, markersize=6)
        if row["baseline"]:
            ax.axvline(row["mean"], color="black", linestyle="--", linewidth=1)
        shown = row["verdict"] if row.get("p_value") is None else f"{row['verdict']} (p={row['p_value']:.2g})"
        ax.text(1.01, y, shown, transform=ax.get_yaxis_transform(), va="center", fontsize=8, color=color)
    ax.set_yticks(range(len(rows)), [f"{row['group']} (baseline)" if row["baseline"] else row["group"]
                                     for row in reversed(rows)])
    ax.set_xlabel(f"{metric} at each run's kept epoch ({'lower' if mode == 'min' else 'higher'} is better)")
    ax.set_title(f"{metric}: mean and 95% interval per group (dots: runs)")
    ax.grid(alpha=0.3, axis="x")
    _warn(fig, note)
    return fig


def _warn(fig: Figure, note: str | None) -> None:
    """`note` in red across the figure's top, wrapped to its width."""
    if note:
        fig.suptitle(note, color="tab:red", fontsize=8, wrap=True)


def _shade_phases(ax, rows: list[dict]) -> None:
    """Shade every other loss phase and name each one at the top of the panel."""
    segments: list[list] = []  # [phase, first epoch, last epoch]
    for row in rows:
        if "phase" not in row:
            return
        if segments and segments[-1][0] == row["phase"]:
            segments[-1][2] = row["epoch"]
        else:
            segments.append([row["phase"], row["epoch"], row["epoch"]])
    for i, (phase, first, last) in enumerate(segments):
        if i % 2 == 0:
            ax.axvspan(first - 0.5, last + 0.5, color="tab:purple", alpha=0.08, linewidth=0)
        ax.text((first + last) / 2, 1.0, f"phase {phase:g}", transform=ax.get_xaxis_transform(), ha="center",
                va="top", fontsize=7, color="tab:purple")


def _epoch_axis(ax, epochs: list[int]) -> None:
    """An x axis of whole epochs spanning every epoch of the figure, whatever this panel plots (a metric evaluated
    at one epoch of three included), at least half an epoch beyond the first and last, with integer ticks only
    (matplotlib alone pads a single point to 0.945 ... 1.055 and ticks it in fractions)."""
    ax.set_xlabel("epoch")
    if epochs:
        first, last = min(epochs), max(epochs)
        margin = max(0.5, 0.05 * (last - first))
        ax.set_xlim(first - margin, last + margin)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def new_figure(**kwargs) -> Figure:
    """A Figure (Figure's keyword arguments) on its own Agg canvas: files only, no display, no pyplot."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Write the figure as PNG atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path

"""Curves hold the logged numbers; `losslab plot` re-draws them; sweep figures overlay every job."""

from __future__ import annotations

import csv

import matplotlib.image
import numpy as np
import pytest

from losslab.cli import main as losslab_main
from losslab.reporting.curves import loss_curves_figure, plot_loss_curves, sweep_figure
from losslab.reporting.evaluation_figures import confusion_matrix_figure
from losslab.reporting.history import write_metrics

ROWS = [
    {"epoch": 1, "lr": 0.01, "train/loss": 3.0, "train/classification": 2.0, "train/box_regression": 1.0,
     "val/loss": 2.5, "val/classification": 1.5, "val/box_regression": 1.0, "time_s": 1.0},
    {"epoch": 2, "lr": 0.001, "train/loss": 2.0, "train/classification": 1.2, "train/box_regression": 0.8,
     "val/loss": 2.2, "val/classification": 1.3, "val/box_regression": 0.9, "time_s": 1.0},
]


def _lines(ax):
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_loss_curves_have_total_component_and_lr_panels_holding_the_data():
    fig = loss_curves_figure(ROWS, title="t", best_epoch=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["total loss", "classification", "box regression"]
    total = _lines(fig.axes[0])
    assert total["train"] == ([1, 2], [3.0, 2.0]) and total["val"] == ([1, 2], [2.5, 2.2])
    assert "best (epoch 2)" in total
    assert _lines(fig.axes[1])["val"] == ([1, 2], [1.5, 1.3])
    lr_line = fig.axes[-1].get_lines()[0]
    assert list(lr_line.get_ydata()) == [0.01, 0.001]


def test_png_is_written_atomically(tmp_path):
    path = plot_loss_curves(ROWS, tmp_path / "loss_curves.png")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 400
    assert [p.name for p in tmp_path.iterdir()] == ["loss_curves.png"]


def test_non_finite_values_do_not_break_the_figure():
    rows = [dict(ROWS[0]), {**ROWS[1], "train/loss": float("inf"), "val/loss": float("nan")}]
    total = _lines(loss_curves_figure(rows).axes[0])
    assert total["train"][1][0] == 3.0 and total["train"][1][1] != total["train"][1][1]  # NaN gap


def test_sweep_figure_overlays_every_run():
    other = [{**r, "val/loss": r["val/loss"] + 1} for r in ROWS]
    fig = sweep_figure([("loss=focal", [ROWS]), ("loss=default", [other])])
    val = _lines(fig.axes[0])
    assert fig.axes[0].get_title().startswith("val/loss")
    assert val["loss=focal"][1] == [2.5, 2.2] and val["loss=default"][1] == [3.5, 3.2]


@pytest.mark.parametrize("runs", [1, 60])
def test_a_sweep_figure_keeps_its_panels_full_height_below_a_legend_of_any_length(runs):
    fig = sweep_figure([(f"optimizer.lr={index}", [ROWS]) for index in range(runs)])
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    for ax in fig.axes:
        assert ax.get_window_extent().height / fig.dpi > 3.0  # inches, as with a short legend
        assert legend.y1 < ax.xaxis.label.get_window_extent().y0  # the legend is below the "epoch" labels
    assert len(fig.legends[0].get_texts()) == runs


def test_losslab_plot_redraws_from_metrics_csv(tmp_path, capsys):
    write_metrics(tmp_path / "metrics.csv", ROWS)
    assert losslab_main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "loss_curves.png").stat().st_size > 1000
    assert str(tmp_path / "loss_curves.png") in capsys.readouterr().out


@pytest.mark.parametrize("setup", ["missing", "empty"])
def test_losslab_plot_explains_a_folder_that_is_not_a_run(tmp_path, capsys, setup):
    run_dir = tmp_path / "run"
    if setup == "empty":
        run_dir.mkdir()
        (run_dir / "metrics.csv").write_text("")
    assert losslab_main(["plot", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "losslab plot: error:" in err and str(run_dir / "metrics.csv") in err


def test_loss_phases_are_shaded_and_named_and_the_reference_loss_drawn():
    rows = [{**ROWS[0], "phase": 1, "val/ref_loss": 2.0}, {**ROWS[1], "phase": 2, "val/ref_loss": 1.8}]
    ax = loss_curves_figure(rows).axes[0]
    assert [t.get_text() for t in ax.texts] == ["phase 1", "phase 2"]
    assert len(ax.patches) == 1  # every other phase is shaded
    assert _lines(ax)["val, loss=default"] == ([1, 2], [2.0, 1.8])


def visible_ticks(ax) -> list[float]:
    ax.figure.canvas.draw()
    low, high = ax.get_xlim()
    return [tick for tick in ax.get_xticks() if low <= tick <= high]


@pytest.mark.parametrize("epochs", [1, 2, 3, 40, 300])
def test_epoch_axes_have_whole_epoch_ticks_at_any_count(epochs):
    rows = [{**ROWS[i % 2], "epoch": i + 1} for i in range(epochs)]
    rows[-1]["val/mAP"] = 0.5  # one evaluation point: its panel still spans every epoch
    figures = [loss_curves_figure(rows), sweep_figure([("a", [rows]), ("b", [rows[:1]])])]
    for ax in [ax for figure in figures for ax in figure.axes]:
        ticks = visible_ticks(ax)
        assert ticks and all(tick == int(tick) for tick in ticks), (ax.get_title(), ticks)
        assert len(ticks) <= 12 and ax.get_xlim()[0] <= 1 and ax.get_xlim()[1] >= epochs
        if epochs <= 3:
            assert ticks == list(range(1, epochs + 1))


def test_confusion_matrix_numbers_are_white_on_dark_cells_and_black_on_light_ones():
    fig = confusion_matrix_figure(np.array([[50, 0, 1], [3, 40, 0], [0, 2, 25]]), ["cat", "dog", "background"])
    counts, rates = fig.axes
    assert [text.get_text() for text in counts.texts[:3]] == ["50", "0", "1"]  # row by row
    for ax in (counts, rates):
        assert ax.texts[0].get_color() == "white"  # the largest count (rate 0.98): the darkest blue
        assert ax.texts[1].get_color() == ax.texts[2].get_color() == "black"  # 0 and 1 (0.02): nearly white
        assert ax.texts[4].get_color() == "white"  # 40 (0.93)


def test_plot_of_a_read_only_run_folder_says_so_and_writes_elsewhere_with_out(tmp_path, monkeypatch, capsys):
    import errno

    import losslab.commands.plot as plot_command

    write_metrics(tmp_path / "metrics.csv", ROWS)
    drawing = plot_command.plot_loss_curves

    def read_only_run_folder(rows, path, **kwargs):
        if path.parent == tmp_path:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return drawing(rows, path, **kwargs)

    monkeypatch.setattr(plot_command, "plot_loss_curves", read_only_run_folder)
    assert losslab_main(["plot", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == (f"losslab plot: error: cannot write into {tmp_path}: Read-only file system. "
                   "Give --out DIR to write elsewhere.\n")
    assert losslab_main(["plot", str(tmp_path), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "loss_curves.png").stat().st_size > 1000


def test_curves_are_drawn_without_pyplot(tmp_path):
    """Figures are drawn through matplotlib's object API, never pyplot's global state, which a library shares with
    its caller (and which is not thread-safe)."""
    import subprocess
    import sys

    code = ("import pathlib, sys\n"
            "from losslab.reporting import evaluation_figures\n"
            "from losslab.reporting.curves import plot_loss_curves\n"
            f"plot_loss_curves({ROWS!r}, pathlib.Path(sys.argv[1]))\n"
            "print('matplotlib.pyplot' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "curves.png")], capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr
    assert (tmp_path / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("components", [0, 2, 5])
def test_panel_labels_and_titles_fit_the_figure_without_overlapping(components):
    """The margins are fixed (no layout engine, which doubles the drawing time): every panel's ticks, labels,
    title and legend must still lie inside the figure and clear of the other panels and the figure's title."""
    from losslab.losses.catalogue import COMPONENTS

    rows = [{"epoch": epoch, "lr": 1e-3 * 0.9 ** epoch, "train/loss": 2 / epoch, "val/loss": 2.1 / epoch,
             "val/mAP": 0.01 * epoch, **{f"{split}/{name}": 1.0 / epoch for name in COMPONENTS[:components]
                                          for split in ("train", "val")}} for epoch in range(1, 13)]
    fig = loss_curves_figure(rows, title="faster_rcnn resnet18_fpn loss=default lr=0.001", best_epoch=7)
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes] + [fig._suptitle.get_window_extent(renderer)]
    for box in boxes:
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1
    for i, first in enumerate(boxes):
        assert not any(first.overlaps(second) for second in boxes[i + 1:])


def test_a_run_keeps_its_colour_in_its_sweeps_figure_and_in_a_comparison_that_names_it_by_its_folder(
        tmp_path, monkeypatch):
    import losslab.reporting.curves as curves
    from conftest import fake_run
    from losslab.reporting.sweep import summarize_sweep

    figures = {}
    saving = curves._save
    monkeypatch.setattr(curves, "_save", lambda fig, path: figures.setdefault(path, fig) and saving(fig, path))
    rows = [{"epoch": 1, "val/loss": 2.0, "val/ref_loss": 2.0}, {"epoch": 2, "val/loss": 1.5, "val/ref_loss": 1.5}]
    for sweep in ("A", "B"):
        for job, loss in enumerate(("default", "focal", "giou")):
            failed = (sweep, job) == ("A", 1)  # A's focal job failed at once: no curve, one place fewer in A's list
            fake_run(tmp_path / sweep / str(job), [f"loss={loss}"], [] if failed else rows,
                     "failed" if failed else "completed", loss={"cls": {"name": loss}})
        summarize_sweep(tmp_path / sweep)
    assert losslab_main(["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--out", str(tmp_path / "out")]) == 0

    def styles(path):
        return {line.get_label(): (line.get_color(), line.get_linestyle())
                for line in figures[path].axes[0].get_lines()}

    # Job N takes colour N whatever its place in the list; each sweep of a comparison its own line style.
    blue, orange, green = "tab:blue", "tab:orange", "tab:green"
    assert styles(tmp_path / "A" / "sweep_curves.png") == {"loss=default": (blue, "-"), "loss=giou": (green, "-")}
    assert styles(tmp_path / "B" / "sweep_curves.png") == {
        "loss=default": (blue, "-"), "loss=focal": (orange, "-"), "loss=giou": (green, "-")}
    assert styles(tmp_path / "out" / "comparison.png") == {
        "A/0: loss=default": (blue, "-"), "A/2: loss=giou": (green, "-"),
        "B/0: loss=default": (blue, "--"), "B/1: loss=focal": (orange, "--"), "B/2: loss=giou": (green, "--")}
    with (tmp_path / "out" / "comparison.csv").open() as f:
        assert sorted(row["run"] for row in csv.DictReader(f)) == ["A/0", "A/1", "A/2", "B/0", "B/1", "B/2"]


def test_line_colours_follow_the_run_folder_not_the_place_in_the_list(tmp_path):
    from losslab.reporting.curves import PALETTE, curve_styles

    jobs = [tmp_path / "sweep" / name for name in ("12", "2", "0", "10")]
    # 12 and 2 both want colour 2, 10 and 0 colour 0: job order (0, 2, 10, 12) decides who gives way.
    assert [style["color"] for style in curve_styles(jobs)] == [PALETTE[3], PALETTE[2], PALETTE[0], PALETTE[1]]
    assert curve_styles(jobs[::-1]) == curve_styles(jobs)[::-1]
    named = curve_styles([tmp_path / "14-03-22", tmp_path / "14-05-01", None])
    assert named[0]["color"] != named[1]["color"] and named[2]["color"] == PALETTE[2]  # no folder: its place

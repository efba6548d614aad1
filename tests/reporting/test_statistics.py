"""Repeated seeds: per group n, mean, sd and 95% t interval, and against the baseline the difference, its interval,
a paired or Welch t-test and a verdict, exactly as scipy computes them from made-up runs; their files and figures."""

from __future__ import annotations

import csv
import json
import statistics

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from scipy import stats

from conftest import fake_run
from losslab.cli import main as losslab_main
from losslab.errors import LosslabError
from losslab.reporting.comparison import read_run
from losslab.reporting.curves import statistics_figure, sweep_figure
from losslab.reporting.repeats import group_curves, group_runs, is_repeat
from losslab.reporting.statistics import against_baseline, bounds_of, clip, describe, verdict, versus
from losslab.reporting.sweep import summarize_repeats, summarize_sweep

# Each run's best val/mAP (higher is better) and best val/ref_loss, by loss and seed; giou's seed 1 failed, its
# other three spread so wide that their t interval of the mean reaches below 0.
MAPS = {"default": [0.30, 0.34, 0.32], "focal": [0.35, 0.38, 0.38], "giou": [0.20, None, 0.40, 0.06]}
REFS = {"default": [1.50, 1.40, 1.45], "focal": [1.30, 1.35, 1.20], "giou": [1.70, None, 1.60, 1.65]}


@pytest.fixture
def seeds(tmp_path):
    """A sweep folder as `train -m loss=default,focal,giou trainer.seed=0,1,2` leaves it, giou with a fourth seed
    (jobs 0..9)."""
    sweep, job = tmp_path / "sweep", 0
    for loss in MAPS:
        for seed, (best_map, best_ref) in enumerate(zip(MAPS[loss], REFS[loss], strict=True)):
            rows = [] if best_map is None else [  # the second epoch holds the best values
                {"epoch": 1, "val/loss": 2.0, "val/ref_loss": best_ref + 0.3, "val/mAP": best_map / 2},
                {"epoch": 2, "val/loss": 1.5, "val/ref_loss": best_ref, "val/mAP": best_map}]
            fake_run(sweep / str(job), [f"loss={loss}", f"trainer.seed={seed}", "trainer.max_epochs=2"], rows,
                     "completed" if rows else "failed", loss={"cls": {"name": loss}})
            job += 1
    return sweep


def _read(path):
    with path.open() as f:
        return {row["group"]: row for row in csv.DictReader(f)}


def test_sweep_stats_hold_scipys_statistics_of_each_group_and_against_the_baseline(seeds):
    report = summarize_sweep(seeds)
    assert report.repeated and report.ranking.metric == "val/mAP"
    rows = summarize_repeats(seeds, report, baseline=None)
    assert [row["group"] for row in rows] == ["loss=focal", "loss=default", "loss=giou"]  # best mean first
    written = _read(seeds / "sweep_stats.csv")
    assert set(written) == {"loss=focal", "loss=default", "loss=giou"}

    default, focal, giou = MAPS["default"], MAPS["focal"], [value for value in MAPS["giou"] if value is not None]
    base = written["loss=default"]
    assert (base["baseline"], base["verdict"], base["n"], base["diff"]) == ("yes", "baseline", "3", "")
    assert float(base["mean"]) == pytest.approx(0.32) and float(base["sd"]) == pytest.approx(0.02)
    low, high = stats.t.interval(0.95, 2, loc=np.mean(default), scale=stats.sem(default))
    assert (float(base["ci_low"]), float(base["ci_high"])) == (pytest.approx(low), pytest.approx(high))
    assert float(base["ref_loss_mean"]) == pytest.approx(1.45) and float(base["ref_loss_sd"]) == pytest.approx(0.05)

    # focal ran the same seeds as the baseline: a paired t-test, seed against seed.
    row = written["loss=focal"]
    paired = stats.ttest_rel(focal, default)
    assert (row["test"], row["rank"], row["repeats"]) == ("paired t", "1", "0 1 2")
    assert float(row["diff"]) == pytest.approx(statistics.mean(focal) - 0.32)
    assert float(row["p_value"]) == pytest.approx(paired.pvalue) and paired.pvalue < 0.05
    interval = paired.confidence_interval(0.95)
    assert (float(row["diff_ci_low"]), float(row["diff_ci_high"])) == (pytest.approx(interval.low),
                                                                           pytest.approx(interval.high))
    assert row["verdict"] == "better"

    # giou's failed seed is counted, never averaged in; its seeds no longer pair up: Welch's t-test.
    row = written["loss=giou"]
    assert (row["jobs"], row["n"], row["statuses"], row["epochs"]) == ("4", "3", "completed 3, failed 1", "2 0 2 2")
    assert float(row["mean"]) == pytest.approx(0.22) and float(row["sd"]) == pytest.approx(statistics.stdev(giou))
    welch = stats.ttest_ind(giou, default, equal_var=False)
    assert row["test"] == "Welch t" and float(row["p_value"]) == pytest.approx(welch.pvalue)
    assert float(row["diff_ci_low"]) == pytest.approx(welch.confidence_interval(0.95).low)
    assert welch.pvalue > 0.05 and row["verdict"] == "no clear difference"
    # mAP lies in [0, 1]: giou's t interval (0.22 -+ 4.303 * 0.0987) is cut at 0 and flagged; the others fit.
    low, high = stats.t.interval(0.95, 2, loc=0.22, scale=stats.sem(giou))
    assert low < 0 and (float(row["ci_low"]), float(row["ci_high"])) == (0.0, pytest.approx(high))
    assert (row["ci_clipped"], row["diff_ci_clipped"], base["ci_clipped"], written["loss=focal"]["ci_clipped"]) == (
        "yes", "", "", "")
    assert (seeds / "sweep_stats.png").stat().st_size > 1000


def test_an_explicit_baseline_is_tested_against_and_a_wrong_one_is_explained(seeds):
    report = summarize_sweep(seeds)
    rows = {row["group"]: row for row in summarize_repeats(seeds, report, baseline="loss=focal")}
    assert rows["loss=focal"]["verdict"] == "baseline" and rows["loss=default"]["verdict"] == "worse"
    assert rows["loss=default"]["diff"] == pytest.approx(0.32 - statistics.mean(MAPS["focal"]))
    with pytest.raises(LosslabError, match=r"sweep.baseline=loss=dice matches 0 groups of runs; expected overrides "
                                           r"that name exactly one of: loss=default; loss=focal; loss=giou"):
        summarize_repeats(seeds, report, baseline="loss=dice")
    with pytest.raises(LosslabError, match="sweep.baseline=trainer.max_epochs=2 matches 3 groups"):
        summarize_repeats(seeds, report, baseline="trainer.max_epochs=2")


def test_the_first_group_is_the_baseline_without_loss_default(tmp_path):
    for job, (lr, seed, value) in enumerate([(0.1, 0, 1.0), (0.1, 1, 1.2), (0.01, 0, 0.8), (0.01, 1, 0.9)]):
        fake_run(tmp_path / str(job), [f"optimizer.lr={lr}", f"trainer.seed={seed}"],
                 [{"epoch": 1, "val/loss": value, "val/ref_loss": value}])
    report = summarize_sweep(tmp_path)
    rows = summarize_repeats(tmp_path, report, baseline=None)
    assert report.ranking.metric == "val/loss"
    assert [(row["group"], row["baseline"], row["n"]) for row in rows] == [
        ("optimizer.lr=0.01", "", 2), ("optimizer.lr=0.1", "yes", 2)]
    assert rows[0]["p_value"] == pytest.approx(stats.ttest_rel([0.8, 0.9], [1.0, 1.2]).pvalue)


def test_the_curves_of_repeated_seeds_are_their_mean_and_range(seeds):
    report = summarize_sweep(seeds)
    assert (seeds / "sweep_curves.png").stat().st_size > 1000
    groups = {group.label: group for group in report.groups}
    assert groups["loss=giou"].repeats == ["0", "1", "2", "3"] and len(groups["loss=giou"].runs) == 4
    fig = sweep_figure([("loss=focal", [run.history for run in groups["loss=focal"].runs])], ("val/mAP",))
    ax = fig.axes[0]
    [line] = ax.get_lines()
    assert line.get_label() == "loss=focal (mean of 3)"
    assert list(line.get_ydata()) == pytest.approx([np.mean(MAPS["focal"]) / 2, np.mean(MAPS["focal"])])
    [band] = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert min(ys) == pytest.approx(0.35 / 2) and max(ys) == pytest.approx(0.38)
    assert "shaded: min-max over the group's runs" in [text.get_text() for text in fig.legends[0].get_texts()]


def test_the_statistics_figure_shows_each_groups_mean_interval_and_runs(seeds):
    rows = summarize_repeats(seeds, summarize_sweep(seeds), baseline=None)
    ax = statistics_figure(rows, "max").axes[0]
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == ["loss=giou", "loss=default (baseline)", "loss=focal"]  # best on top
    means = [line.get_xdata()[0] for line in ax.get_lines() if line.get_marker() == "D"]
    assert means == pytest.approx([0.22, 0.32, np.mean(MAPS["focal"])])
    assert "better (p=" in " ".join(text.get_text() for text in ax.texts)


def test_compare_groups_runs_from_several_folders_by_seed(seeds, tmp_path, capsys):
    folders = [str(seeds / str(job)) for job in range(6)]  # default and focal, as single runs
    out = tmp_path / "out"
    assert losslab_main(["compare", *folders, "--group-by", "seed", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.index("loss=focal    3/3") < printed.index("loss=default  3/3")
    assert "paired t  better" in printed
    written = _read(out / "comparison_stats.csv")
    assert float(written["loss=focal"]["p_value"]) == pytest.approx(
        stats.ttest_rel(MAPS["focal"], MAPS["default"]).pvalue)
    for name in ("comparison.csv", "comparison.png", "comparison_stats.png"):
        assert (out / name).stat().st_size > 100, name
    assert losslab_main(["compare", *folders, "--baseline", "loss=focal"]) == 1
    assert "expected --group-by KEY with it" in capsys.readouterr().err


def test_a_repeat_key_names_a_key_or_every_key_ending_in_it():
    assert is_repeat("trainer.seed=1", "trainer.seed") and is_repeat("split.seed=1", "seed")
    assert is_repeat("+trainer.seed=1", "seed") and not is_repeat("split.seed=1", "trainer.seed")
    assert not is_repeat("data.seeds=1", "seed")


def test_groups_pool_every_value_of_the_repeat_key_and_ignore_the_run_folder(tmp_path):
    runs = [fake_run(tmp_path / str(i), overrides, []) for i, overrides in enumerate(
        [["loss=focal", "run_dir=a"], ["loss=focal", "trainer.seed=1", "run_dir=b"], ["loss=default"]])]
    groups = group_runs([read_run(run) for run in runs], "trainer.seed")
    assert [(g.label, g.repeats) for g in groups] == [("loss=focal", ["default", "1"]), ("loss=default", ["default"])]


def test_statistics_of_too_few_or_identical_values():
    assert describe([0.5]) == {"n": 1, "mean": 0.5, "sd": None, "ci_low": None, "ci_high": None}
    assert describe([0.5, 0.5])["ci_low"] == 0.5 and describe([0.5, 0.5])["sd"] == 0.0
    alone = versus([0.5], [0.4, 0.6], paired=False)
    assert alone["diff"] == pytest.approx(0.0) and alone["p_value"] is None
    assert verdict(alone["diff"], alone["p_value"], "min") == "too few runs"
    assert verdict(0.0, float("nan"), "min") == "no clear difference"
    assert verdict(-0.1, 0.01, "min") == "better" and verdict(-0.1, 0.01, "max") == "worse"
    assert verdict(-0.1, 0.2, "min") == "no clear difference"


def _sweep(folder, maps_by_loss):
    """A sweep of one epoch per job: each loss's best val/mAP by seed."""
    job = 0
    for loss, maps in maps_by_loss.items():
        for seed, value in enumerate(maps):
            rows = [{"epoch": 1, "val/loss": 1.0, "val/ref_loss": 1.0, "val/mAP": value}]
            fake_run(folder / str(job), [f"loss={loss}", f"trainer.seed={seed}"], rows, loss={"cls": {"name": loss}})
            job += 1
    return folder


def test_identical_groups_read_identical_results_and_share_a_rank(tmp_path, capsys):
    # focal scores what default scores, seed for seed (a loss the model's output does not feel): nothing to test.
    sweep = _sweep(tmp_path / "sweep", {"default": [0.30, 0.34, 0.32], "focal": [0.30, 0.34, 0.32],
                                        "giou": [0.40, 0.44, 0.42]})
    report = summarize_sweep(sweep)
    rows = {row["group"]: row for row in summarize_repeats(sweep, report, baseline=None)}
    focal = rows["loss=focal"]
    assert (focal["verdict"], focal["diff"], focal["p_value"], focal["test"]) == ("identical results", 0.0, None, None)
    assert (focal["diff_ci_low"], focal["diff_ci_high"]) == (None, None)
    assert [(rows[g]["rank"]) for g in ("loss=giou", "loss=default", "loss=focal")] == [1, 2, 2]  # 1, 2, 2: tied
    assert rows["loss=giou"]["verdict"] == "better"  # 0.1 above on every seed: sd of the differences 0, p 0
    # Jobs with equal best values share their rank too (competition ranking: the next one skips).
    with (sweep / "sweep_summary.csv").open() as f:
        ranks = [(row["rank"], row["value"]) for row in csv.DictReader(f)]
    assert ranks == [("1", "0.44"), ("2", "0.42"), ("3", "0.4"), ("4", "0.34"), ("4", "0.34"), ("6", "0.32"),
                     ("6", "0.32"), ("8", "0.3"), ("8", "0.3")]
    assert losslab_main(["compare", str(sweep), "--group-by", "seed", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "identical results" in printed and "nan" not in printed.lower()


def test_with_fewer_than_three_runs_a_side_the_verdict_says_the_evidence_is_too_thin(tmp_path):
    sweep = _sweep(tmp_path, {"default": [0.30, 0.32], "focal": [0.40, 0.43]})
    rows = {row["group"]: row for row in summarize_repeats(sweep, summarize_sweep(sweep), baseline=None)}
    focal = rows["loss=focal"]
    # scipy's paired test is reported (p = 0.030 here, below 5%), but no verdict is drawn from two seeds.
    assert focal["p_value"] == pytest.approx(stats.ttest_rel([0.40, 0.43], [0.30, 0.32]).pvalue)
    assert focal["verdict"] == "evidence too thin: 2 runs against 2, 3 a side needed to call it"
    # Three a side: called (differences 0.10, 0.11, 0.10: p = 0.001).
    sweep = _sweep(tmp_path / "three", {"default": [0.30, 0.32, 0.31], "focal": [0.40, 0.43, 0.41]})
    rows = {row["group"]: row for row in summarize_repeats(sweep, summarize_sweep(sweep), baseline=None)}
    assert rows["loss=focal"]["verdict"] == "better"


def test_intervals_of_a_fraction_stay_within_its_bounds_and_say_when_they_were_cut():
    assert bounds_of("val/mAP") == bounds_of("val/mIoU") == bounds_of("val/IoU/cat") == (0.0, 1.0)
    assert bounds_of("val/pixel_accuracy") == bounds_of("val/mAP50") == (0.0, 1.0)
    assert bounds_of("val/ref_loss") is None and bounds_of("val/loss") is None
    assert clip(-0.2, 0.6, (0.0, 1.0)) == (0.0, 0.6, True) and clip(0.1, 0.6, (0.0, 1.0)) == (0.1, 0.6, False)
    assert clip(0.9, 1.3, (0.0, 1.0)) == (0.9, 1.0, True) and clip(-5.0, 3.0, None) == (-5.0, 3.0, False)
    # Means 1/3 and 2/3, each sd 0.577: Welch's interval of the difference, -1/3 -+ 2.776 * 0.471, reaches -1.64,
    # beyond the -1 a difference of two fractions can be.
    result = against_baseline([0.0, 1.0, 0.0], [1.0, 0.0, 1.0], paired=False, mode="max", bounds=(0.0, 1.0))
    welch = stats.ttest_ind([0.0, 1.0, 0.0], [1.0, 0.0, 1.0], equal_var=False).confidence_interval(0.95)
    assert welch.low < -1 and result["diff"] == pytest.approx(-1 / 3)
    assert (result["diff_ci_low"], result["diff_ci_high"], result["diff_ci_clipped"]) == (
        -1.0, pytest.approx(welch.high), True)
    assert result["verdict"] == "no clear difference"
    loss = against_baseline([0.0, 1.0, 0.0], [1.0, 0.0, 1.0], paired=False, mode="min", bounds=None)
    assert loss["diff_ci_low"] == pytest.approx(welch.low) and not loss["diff_ci_clipped"]
    # Identical samples (seed for seed, or as sets without pairing) are said so; one run a side is too few.
    assert against_baseline([0.3, 0.5], [0.3, 0.5], True, "max", None)["verdict"] == "identical results"
    assert against_baseline([0.5, 0.3], [0.3, 0.5], False, "max", None)["verdict"] == "identical results"
    assert against_baseline([0.5, 0.3], [0.3, 0.5], True, "max", None)["verdict"] != "identical results"
    assert against_baseline([0.5], [0.3, 0.5, 0.4], False, "max", None)["verdict"] == "too few runs"
    assert against_baseline([], [0.3, 0.5, 0.4], False, "max", None)["verdict"] == "too few runs"


def test_a_group_curve_with_one_point_draws_its_range_as_an_error_bar():
    # mAP evaluated at the last epoch only: a shade between points has nothing to span.
    runs = [[{"epoch": 1, "val/loss": 2.0}, {"epoch": 2, "val/loss": 1.0 + d, "val/mAP": 0.2 + d}] for d in (0, 0.2)]
    fig = sweep_figure([("loss=focal", runs)], ("val/mAP", "val/loss"))
    maps, losses = fig.axes
    [line] = [line for line in maps.get_lines() if line.get_label() == "loss=focal (mean of 2)"]
    assert list(line.get_xdata()) == [2] and list(line.get_ydata()) == pytest.approx([0.3])
    [bar] = maps.collections
    [segment] = bar.get_segments()
    assert segment[:, 0].tolist() == [2, 2] and segment[:, 1].tolist() == pytest.approx([0.2, 0.4])
    assert tuple(bar.get_color()[0][:3]) == pytest.approx(to_rgb(line.get_color()))
    [band] = losses.collections  # two epochs of val/loss: shaded, min-max 1.0 .. 1.2 at epoch 2
    vertices = band.get_paths()[0].vertices
    assert sorted(set(vertices[vertices[:, 0] == 2][:, 1].round(6))) == [1.0, 1.2]
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert "shaded: min-max over the group's runs" in legend
    assert "error bar: min-max over the group's runs at its one epoch" in legend
    # A range that is not drawn is not promised.
    only_map = [text.get_text() for text in sweep_figure([("loss=focal", runs)], ("val/mAP",)).legends[0].get_texts()]
    assert not any(text.startswith("shaded") for text in only_map)


def test_a_group_has_one_colour_in_the_sweeps_curves_and_statistics(seeds):
    report = summarize_sweep(seeds)
    rows = summarize_repeats(seeds, report, baseline=None)
    # Each group takes the colour of its first job: default job 0, focal job 3, giou job 6.
    expected = {"loss=default": "tab:blue", "loss=focal": "tab:red", "loss=giou": "tab:pink"}
    curves = sweep_figure(group_curves(report.groups), ("val/mAP",)).axes[0].get_lines()
    assert {line.get_label().split(" (")[0]: line.get_color() for line in curves} == expected
    ax = statistics_figure(rows, "max").axes[0]
    diamonds = [line.get_color() for line in ax.get_lines() if line.get_marker() == "D"]
    assert diamonds == [expected[row["group"]] for row in reversed(rows)]  # best on top, drawn bottom up


def test_the_sweep_table_shows_each_jobs_final_gradient_shares_and_balanced_weights(tmp_path):
    rows = [{"epoch": 1, "val/loss": 1.0, "train/grad_share/classification": 0.6,
             "train/grad_share/box_regression": 0.4},
            {"epoch": 2, "val/loss": 0.9, "train/grad_share/classification": 0.55,
             "train/grad_share/box_regression": 0.45}]
    fake_run(tmp_path / "0", ["loss/box=giou", "loss.balance=initial"], rows)
    summary = json.loads((tmp_path / "0" / "summary.json").read_text())
    (tmp_path / "0" / "summary.json").write_text(json.dumps(summary | {"balanced_weights": {"0": {"box": 9.48}}}))
    fake_run(tmp_path / "1", ["loss/box=giou"], rows[:1])
    jobs = {job["job"]: job for job in summarize_sweep(tmp_path).jobs}
    assert jobs["0"]["grad_shares"] == "classification 0.550 box_regression 0.450"
    assert jobs["0"]["balanced_weights"] == "box 9.48" and jobs["1"]["balanced_weights"] is None
    with (tmp_path / "sweep_summary.csv").open() as f:
        written = {row["job"]: row for row in csv.DictReader(f)}
    assert written["1"]["grad_shares"] == "classification 0.600 box_regression 0.400"

"""Repeated runs: runs that differ only in the repeat key (trainer.seed by default) are one group; each group's
statistics of the ranking metric and of val/ref_loss, and its verdict against a baseline group: the rows of
sweep_stats.csv and of `losslab compare --group-by`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from losslab.errors import LosslabError
from losslab.reporting.comparison import FinishedRun, distinguishing, format_table, kept_value
from losslab.reporting.ranking import REF_LOSS, Ranking, ranked
from losslab.reporting.statistics import against_baseline, bounds_of, clip, describe

IGNORED_KEYS = ("run_dir", "resume")  # they name a run's folder, not what it trains
USABLE = ("completed", "stopped_early")  # runs whose values are averaged; the others are counted, never averaged in
DEFAULT_BASELINE = "loss=default"
STATS_COLUMNS = ("rank", "group", "baseline", "jobs", "n", "statuses", "repeats", "epochs", "rank_by", "mean", "sd",
                 "ci_low", "ci_high", "ci_clipped", "ref_loss_mean", "ref_loss_sd", "ref_loss_ci_low",
                 "ref_loss_ci_high", "diff", "diff_ci_low", "diff_ci_high", "diff_ci_clipped", "p_value", "test",
                 "verdict")


@dataclass
class Group:
    """Runs given the same overrides apart from the repeat key."""

    overrides: list[str]  # what every run of the group was given, the repeat key aside
    runs: list[FinishedRun] = field(default_factory=list)
    repeats: list[str] = field(default_factory=list)  # each run's repeat-key value ("default" where not given)
    label: str = ""  # the overrides that set the group apart from the others


def override_key(override: str) -> str:
    """`trainer.seed` of `trainer.seed=1`, `+loss.cls.epsilon=2` -> `loss.cls.epsilon`."""
    return override.lstrip("+~").partition("=")[0]


def is_repeat(override: str, repeat_key: str) -> bool:
    """Whether `override` sets `repeat_key`: the key itself or any key ending in `.repeat_key` (seed: trainer.seed,
    split.seed, data.seed)."""
    key = override_key(override)
    return key == repeat_key or key.endswith(f".{repeat_key}")


def group_runs(runs: list[FinishedRun], repeat_key: str) -> list[Group]:
    """The runs grouped by their overrides without those of `repeat_key`, groups in the order of their first run."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        kept = [o for o in run.overrides if not is_repeat(o, repeat_key) and override_key(o) not in IGNORED_KEYS]
        group = groups.setdefault(tuple(sorted(kept)), Group(kept))
        group.runs.append(run)
        group.repeats.append(",".join(o.partition("=")[2] for o in run.overrides if is_repeat(o, repeat_key))
                             or "default")
    for group, label in zip(groups.values(), distinguishing([g.overrides for g in groups.values()]), strict=True):
        group.label = " ".join(label) or "all runs"
    return list(groups.values())


def has_repeats(groups: list[Group]) -> bool:
    return any(len(group.runs) > 1 for group in groups)


def group_curves(groups: list[Group]) -> list[tuple[str, list[list[dict]], Path]]:
    """(label, metrics.csv rows of each averaged run, the group's first run folder) per group with any: the lines
    sweep_curves.png draws (curves.Curve), each coloured by its first run's folder."""
    curves = [(group.label, [run.history for run in group.runs if run.status in USABLE and run.history],
               group.runs[0].path) for group in groups]
    return [curve for curve in curves if curve[1]]


def baseline_group(groups: list[Group], requested: str | None, source: str) -> Group:
    """The group named by `requested` (overrides separated by spaces, all of which the group was given), else the
    group given loss=default, else the first."""
    if requested is None:
        return next((group for group in groups if DEFAULT_BASELINE in group.overrides), groups[0])
    wanted = set(requested.split())
    matches = [group for group in groups if wanted <= set(group.overrides)]
    if len(matches) != 1:
        labels = "; ".join(group.label for group in groups)
        raise LosslabError(f"{source}={requested} matches {len(matches)} groups of runs; expected overrides that "
                           f"name exactly one of: {labels}.")
    return matches[0]


def group_statistics(groups: list[Group], ranking: Ranking, baseline: str | None, source: str) -> list[dict]:
    """One sweep_stats.csv row per group, best mean first (equal means share a rank): n, mean, sd and 95% interval
    of each run's ranking metric and val/ref_loss at its kept epoch, and (but for the baseline) the difference of the
    means from the baseline's, its interval, the p-value of a paired t-test when both groups have the same repeats,
    else Welch's, and the verdict (see statistics.against_baseline: identical results, too few runs, evidence too
    thin, better, worse, no clear difference). The intervals of a metric bounded to [0, 1] are clipped to what it
    can take, and flagged "yes" in ci_clipped / diff_ci_clipped. Only completed (or early-stopped) runs are
    averaged; the others are counted."""
    base = baseline_group(groups, baseline, source)
    base_values = _values(base, ranking)
    bounds = bounds_of(ranking.metric)
    rows = []
    for group in groups:
        values = _values(group, ranking)
        ref = [kept_value(run, REF_LOSS)[0] for run in group.runs if run.status in USABLE]
        summary = describe([value for _, value in values])
        summary["ci_low"], summary["ci_high"], clipped = clip(summary["ci_low"], summary["ci_high"], bounds)
        row = {"group": group.label, "baseline": "yes" if group is base else "", "jobs": len(group.runs),
               "statuses": _statuses(group, ranking.metric), "repeats": " ".join(group.repeats),
               "epochs": " ".join(str(run.summary.get("epochs_run", len(run.history))) for run in group.runs),
               "rank_by": ranking.metric, "values": [value for _, value in values], "folder": group.runs[0].path,
               **summary, "ci_clipped": _yes(clipped),
               **{f"ref_loss_{key}": value for key, value in describe([v for v in ref if v is not None]).items()
                  if key != "n"}}
        if group is base:
            row["verdict"] = "baseline"
        else:
            difference = against_baseline(*_samples(values, base_values), ranking.mode, bounds)
            row |= difference | {"diff_ci_clipped": _yes(difference["diff_ci_clipped"])}
        rows.append(row)
    return ranked(rows, ranking.mode, value="mean")


def format_statistics(rows: list[dict]) -> str:
    """The console table of group_statistics rows: n of jobs, mean and interval, the difference from the
    baseline with its interval, p-value, test and verdict."""
    shown = [{"rank": row["rank"], "group": row["group"], "n": f"{row['n']}/{row['jobs']}",
              f"mean {row['rank_by']}": row["mean"],
              "95% CI": _interval(row["ci_low"], row["ci_high"], row["ci_clipped"]),
              "vs baseline": None if row.get("diff") is None else f"{row['diff']:+.4f}",
              "95% CI of the difference": _interval(row.get("diff_ci_low"), row.get("diff_ci_high"),
                                                          row.get("diff_ci_clipped")),
              "p": None if row.get("p_value") is None else f"{row['p_value']:.3g}", "test": row.get("test"),
              "verdict": row["verdict"], "runs": row["statuses"]} for row in rows]
    return format_table(shown, tuple(shown[0]))


def _values(group: Group, ranking: Ranking) -> list[tuple[str, float]]:
    """(repeat, ranking value at the kept epoch) of each run that is averaged: completed or stopped early, with a
    value."""
    values = []
    for run, repeat in zip(group.runs, group.repeats, strict=True):
        value = kept_value(run, ranking.metric)[0]
        if run.status in USABLE and value is not None:
            values.append((repeat, value))
    return values


def _samples(values: list[tuple[str, float]], base: list[tuple[str, float]]) -> tuple[list, list, bool]:
    """Both groups' values, paired by repeat when both averaged runs of the same repeats (each once)."""
    repeats, base_repeats = [r for r, _ in values], [r for r, _ in base]
    paired = sorted(repeats) == sorted(base_repeats) and len(set(repeats)) == len(repeats)
    if not paired:
        return [v for _, v in values], [v for _, v in base], False
    by_repeat = dict(base)
    return [v for _, v in sorted(values)], [by_repeat[r] for r in sorted(repeats)], True


def _statuses(group: Group, metric: str) -> str:
    """'completed 2, failed 1': how many runs ended how (a completed run without `metric` counted apart)."""
    counts = Counter(run.status if run.status not in USABLE or kept_value(run, metric)[0] is not None
                     else f"{run.status} without {metric}" for run in group.runs)
    return ", ".join(f"{status} {count}" for status, count in counts.items())


def _interval(low: float | None, high: float | None, clipped: str | None) -> str | None:
    return None if low is None else f"[{low:.4f}, {high:.4f}]" + (" clipped" if clipped else "")


def _yes(flag: bool) -> str:
    return "yes" if flag else ""

"""Whether a metric compares runs fairly: what each run's summary.json says its numbers were measured on
(`measured_on`: task, data, split, val images, reference loss, image size), and the warning a table and its figures
carry where it does not."""

from __future__ import annotations

import json

from losslab.reporting.comparison import FinishedRun
from losslab.reporting.ranking import Ranking, loss_metric


def incomparable(runs: list[FinishedRun], metric: str) -> list[str]:
    """Why `metric` cannot rank `runs` fairly, one phrase per difference in what their summary.json says the
    numbers were measured on: the task, the dataset, the split (any metric); the reference loss (the architecture
    where each has its own) and the image size (a loss's scale); runs written before losslab recorded it are
    left out. Empty when they are comparable."""
    bases = [run.summary["measured_on"] for run in runs if run.summary.get("measured_on")]
    keys = ("task", "data", "split", "val_images") + (("reference_loss", "image_size") if loss_metric(metric) else ())
    reasons = []
    for key in keys:
        values = list(dict.fromkeys(json.dumps(basis.get(key), sort_keys=True) for basis in bases))
        if len(values) > 1:
            shown = ", ".join(values[:3]) + (f" and {len(values) - 3} more" if len(values) > 3 else "")
            reasons.append(f"{key.replace('_', ' ')} ({shown})")
    return reasons


def comparability_note(runs: list[FinishedRun], ranking: Ranking, forced: bool) -> str | None:
    """The warning a table and its figure carry when `ranking` ranks runs it cannot rank fairly (None when it
    can): what differs, and whether the user chose it (`forced`: --force or an explicit metric)."""
    reasons = incomparable(runs, ranking.metric)
    if not reasons:
        return None
    chosen = "ranked as asked" if forced else "ranked anyway"
    return f"NOT COMPARABLE by {ranking.metric}: the runs differ in {'; '.join(reasons)} ({chosen})"

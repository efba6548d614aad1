"""Which metrics.csv column ranks a set of runs, and why; each run's best value of it; runs sorted best first.

Each run's `val/loss` is its own training objective: a focal loss is smaller than cross-entropy on the same
predictions, so runs trained with different losses cannot be ranked by it. When they differ in any `loss`
setting the default is a common yardstick instead: val/mAP (task=segmentation: val/mIoU) when every run evaluated
it, else val/ref_loss (every run scored with the reference loss: loss=default, or plain cross-entropy per pixel).
Every run is ranked by its value at the epoch whose weights it keeps (best.pt), so the winner's checkpoint is
the one ranked.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from losslab.losses.catalogue import COMPONENTS

log = logging.getLogger(__name__)

MAP, MIOU, REF_LOSS = "val/mAP", "val/mIoU", "val/ref_loss"
EVALUATED_YARDSTICKS = (MAP, MIOU)  # detection's, segmentation's
SHOWN_DIFFERENCES = 3  # loss keys named in a reason; the rest are counted


@dataclass(frozen=True)
class Ranking:
    """The column runs are ranked by, min or max, and the sentence saying why (for tables and the console)."""

    metric: str
    mode: str
    reason: str


def default_mode(metric: str) -> str:
    """Losses are better low; mAP, AP, AR, precision, recall and F1 high, and segmentation's mIoU, IoU, mDice and
    pixel accuracy."""
    name = metric.rsplit("/", 1)[-1].lower().removeprefix("mask_")  # Mask R-CNN's mask_mAP is an mAP
    higher = name.startswith(("map", "ap", "ar", "mar", "precision", "recall", "f1", "miou", "mdice", "pixel_accuracy"))
    return "max" if higher or "/iou/" in metric.lower() else "min"


def own_objective(metric: str) -> bool:
    """Whether `metric` is a value of the run's own training loss (train/ or val/ total or component)."""
    split, _, name = metric.partition("/")
    return split in ("train", "val") and name in ("loss", *COMPONENTS)


def loss_differences(loss_sections: list[dict]) -> list[str]:
    """The dotted `loss` keys (loss.cls.name, loss.weights.mask, ...) whose values are not the same in every run,
    the loss names first."""
    flat = [_flatten(section, "loss") for section in loss_sections]
    keys = dict.fromkeys(key for run in flat for key in run)
    differing = [key for key in keys if len({repr(run.get(key)) for run in flat}) > 1]
    return sorted(differing, key=lambda key: not key.endswith(".name"))


def loss_metric(metric: str) -> bool:
    """Whether `metric` is a loss value (the run's own, or val/ref_*): its scale depends on the architecture's
    reference and the image size, not only on how good the predictions are."""
    return own_objective(metric) or metric.startswith("val/ref_")


def choose_ranking(requested: str | None, mode: str | None, monitor: str | None, loss_sections: list[dict],
                   evaluated: str | None, source: str) -> Ranking:
    """The ranking of runs whose configs hold `loss_sections`; `monitor` is the selection metric every run picked
    its kept epoch by (summary.json's monitor), None when they differ; `evaluated` is the evaluated yardstick
    every run has at its kept epoch (val/mAP, val/mIoU) or None.

    `requested` is the metric the user named (by `source`: "sweep.rank_by" or "--metric"), None for the
    default: `monitor`, unless it is each run's own objective and the runs differ in a loss setting, or the runs
    selected by different metrics; then `evaluated` if there is one, else val/ref_loss. A requested own-objective
    metric across different losses is used as asked, with a warning. Whatever ranks, each run is ranked by its
    value at the epoch whose weights it keeps. `mode` None: from the column's name.
    """
    differing = loss_differences(loss_sections)
    named = _named(differing)
    yardstick = evaluated or REF_LOSS
    how = "every run evaluated it at its kept epoch" if evaluated else "every run's val loss under loss=default"
    if requested is not None:
        metric, reason = requested, f"{source}={requested}"
        if differing and own_objective(requested):
            log.warning("%s is each run's own training loss and the runs differ in %s: its values are on different "
                        "scales; %s or %s compare them", requested, named, " or ".join(EVALUATED_YARDSTICKS), REF_LOSS)
    elif monitor is None:
        metric = yardstick
        reason = f"the runs selected their kept epochs by different metrics; {metric} is common to them ({how})"
    elif differing and own_objective(monitor):
        metric = yardstick
        reason = (f"the runs differ in {named}, so each run's own {monitor} is on its own scale; "
                  f"{metric} is common to their losses ({how}); the kept epochs were selected by {monitor}")
    else:
        metric = monitor
        reason = f"the selection metric {monitor}, which picked each run's kept epoch"
        if differing:
            reason += " (common to the runs' losses)"
    return Ranking(metric, mode or default_mode(metric), reason)


def ranked(rows: list[dict], mode: str, value: str = "best") -> list[dict]:
    """`rows` sorted by their `value` (rows without one last, in the order given), each given its "rank":
    competition ranking, so equal values share a rank and the next value skips as many (1, 1, 3); rows without a
    value follow one by one (nothing ties them). Equal means equal up to float rounding (a mean summed in another
    order)."""
    sign = 1 if mode == "min" else -1
    rows = sorted(rows, key=lambda row: (row[value] is None, sign * (row[value] or 0.0)))
    for position, row in enumerate(rows):
        before = rows[position - 1] if position else None
        row["rank"] = before["rank"] if before and _tied(before[value], row[value]) else position + 1
    return rows


def _tied(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def _named(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_DIFFERENCES])
    return shown + (f" and {len(keys) - SHOWN_DIFFERENCES} more" if len(keys) > SHOWN_DIFFERENCES else "")


def _flatten(node, prefix: str) -> dict:
    if not isinstance(node, dict):
        return {prefix: node}
    flat = {}
    for key, value in node.items():
        flat |= _flatten(value, f"{prefix}.{key}")
    return flat

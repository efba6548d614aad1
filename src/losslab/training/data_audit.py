"""The data audit of built data, written as data_audit.json and data_audit.png: what `losslab data` writes into its
folder and a run into its run folder (where it also warns, one line each, of leaks and untrainable classes)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from losslab.data.audit import audit, figure_points, run_warnings
from losslab.data.audit_sources import left_out, split_facts
from losslab.reporting.audit_figure import plot_audit
from losslab.reporting.history import write_json

log = logging.getLogger(__name__)

AUDIT_FILES = ("data_audit.json", "data_audit.png")


def audit_data(data) -> tuple[dict, dict]:
    """The audit's numbers (losslab.data.audit.audit) and figure points of `data`, a task's built splits."""
    facts, unit, background_first = split_facts(data)
    return audit(facts, data.classes, unit, background_first, left_out(data)), figure_points(facts)


def write_audit(folder: Path, numbers: dict, points: dict) -> list[Path]:
    """data_audit.json and data_audit.png in `folder`, each replaced atomically."""
    json_path, png_path = (folder / name for name in AUDIT_FILES)
    write_json(json_path, numbers)
    plot_audit(numbers, points, png_path)
    return [json_path, png_path]


def audit_run_data(data, run_dir: Path) -> dict:
    """A run's audit of its splits, written into its folder; a warning line for each leak or class the train split
    lacks. The numbers."""
    started = time.perf_counter()
    numbers, points = audit_data(data)
    write_audit(run_dir, numbers, points)
    for line in run_warnings(numbers):
        log.warning("data audit: %s", line)
    log.debug("data audit written in %.2f s", time.perf_counter() - started)
    return numbers

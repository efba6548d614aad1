"""`losslab data [overrides]`: the audit of a dataset's splits before any training: a table on screen, and
data_audit.json and data_audit.png in the audit's own folder (`--out DIR`, or a new outputs/audits/DATE/TIME).

The data and split are configured exactly as `train` would be (the same overrides), so the audit describes the
images a run with those overrides would train and validate on.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from losslab.config.validation import plan_of
from losslab.errors import LosslabError
from losslab.training.data_audit import AUDIT_FILES, audit_data, write_audit

NEW_FOLDERS = 100  # audits started in the same second: TIME, TIME_1, TIME_2, ...


def audit_dataset(overrides: list[str], out: Path | None = None) -> tuple[dict, Path]:
    """The audit of the data and split `overrides` configure, written into `out` (default: a new
    outputs/audits/DATE/TIME); its numbers and the folder."""
    if out is not None:
        check_own_folder(out)
    plan = plan_of(overrides)
    sections = plan.sections
    numbers, points = audit_data(plan.task.build_data(sections["data"], sections["split"]))
    numbers["data"] = sections["data"]["name"]
    folder = new_folder() if out is None else out
    folder.mkdir(parents=True, exist_ok=True)
    write_audit(folder, numbers, points)
    return numbers, folder


def check_own_folder(out: Path) -> None:
    """Refuse `out` unless it is new, empty, or holds only an earlier audit's files (which are replaced)."""
    if out.exists() and not out.is_dir():
        raise LosslabError(f"--out {out} is a file; expected a folder for data_audit.json and data_audit.png.")
    others = sorted(p.name for p in out.iterdir() if p.name not in AUDIT_FILES) if out.is_dir() else []
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise LosslabError(f"--out {out} holds files that are not an audit's ({shown}); the audit writes only into "
                           "a new or empty folder, or one holding an earlier audit. Choose another --out.")


def new_folder() -> Path:
    """A new outputs/audits/DATE/TIME (TIME_N when audits of the same second took the first ones)."""
    base = Path("outputs") / "audits" / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    base.parent.mkdir(parents=True, exist_ok=True)
    for candidate in (base, *(base.with_name(f"{base.name}_{n}") for n in range(1, NEW_FOLDERS))):
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise LosslabError(f"no free audit folder under {base.parent} for this second; choose one with --out DIR.")


def audit_table(numbers: dict) -> str:
    """The audit's numbers as console lines: one column per split, the classes, leaks and suggestions."""
    unit, splits = numbers["unit"], numbers["splits"]
    names = list(splits)
    rows = [("", names), ("images", [s["images"] for s in splits.values()]),
            (unit, [s[unit] for s in splits.values()]),
            ("without objects", [s["images_without_objects"] for s in splits.values()])]
    if any(s["objects_per_image"] for s in splits.values()):
        rows += [("objects/image", [_mean_max(s["objects_per_image"]) for s in splits.values()]),
                 ("small/medium/large", ["/".join(str(s["sizes"][k]) for k in ("small", "medium", "large"))
                                         for s in splits.values()]),
                 ("side/image (median)", [_median(s["relative_size"]) for s in splits.values()]),
                 ("aspect w/h (p10-p90)", [_p10_p90(s["aspect_ratio"]) for s in splits.values()]),
                 ("touching the edge", [s["touching_edge"] for s in splits.values()])]
    rows += [("image sizes", [_common_size(s["image_sizes"]) for s in splits.values()]),
             ("duplicates", [s["duplicates"]["images"] for s in splits.values()]),
             ("imbalance max/min", [_ratio(s["imbalance_ratio"]) for s in splits.values()]),
             (f"{unit} / images per class:", ["" for _ in names])]
    rows += [(f"  {name}", [f"{s['classes'][i][unit]}/{s['classes'][i]['images']}" for s in splits.values()])
             for i, name in enumerate(numbers["classes"])]
    width = max(len(label) for label, _ in rows) + 2
    cell = max(12, *(len(str(v)) + 2 for _, values in rows for v in values))
    lines = [f"{label:<{width}}" + "".join(f"{str(v):>{cell}}" for v in values) for label, values in rows]
    leaks = numbers["leaks"]
    lines.append("images in two splits: " + (", ".join(f"{pair} {n}" for pair, n in leaks["pairs"].items())
                                              if leaks["images"] else "none"))
    left_out = numbers["left_out"]
    counts = ", ".join(f"{key} {n}" for key, n in left_out.items()) if left_out is not None else \
        f"not counted by data={numbers.get('data')}'s reader"
    lines.append(f"left out while loading: {counts}")
    lines += ["suggestions:", *(f"  - {line}" for line in numbers["suggestions"])] if numbers["suggestions"] \
        else ["suggestions: none"]
    return "\n".join(lines)


def _mean_max(spread: dict | None) -> str:
    return f"{spread['mean']:.2g} (max {spread['max']:g})" if spread else "-"


def _median(spread: dict | None) -> str:
    return f"{spread['median']:.2f}" if spread else "-"


def _p10_p90(spread: dict | None) -> str:
    return f"{spread['p10']:.2f}-{spread['p90']:.2f}" if spread else "-"


def _common_size(sizes: dict | None) -> str:
    if not sizes:
        return "-"
    width, height, _ = sizes["most_common"][0]
    return f"{width}x{height}" + (f" +{sizes['distinct'] - 1}" if sizes["distinct"] > 1 else "")


def _ratio(ratio: float | None) -> str:
    return f"{ratio:.3g}:1" if ratio is not None else "-"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="train's data and split overrides, e.g. data=coco "
                        "data.images=DIR data.annotations=FILE.json split=stratified")
    parser.add_argument("--out", type=Path, help="the audit's folder: new, empty, or holding an earlier audit "
                        "(default: a new outputs/audits/DATE/TIME)")


def main(args: argparse.Namespace) -> int:
    numbers, folder = audit_dataset(args.overrides, args.out)
    print(audit_table(numbers))
    print(f"written to {folder}: {', '.join(AUDIT_FILES)}")
    return 0

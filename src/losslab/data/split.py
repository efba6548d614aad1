"""Train/val/test splits of a dataset's image ids, and split.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from losslab.errors import LosslabError

SPLITS = ("train", "val", "test")


def random_split(image_ids: list, train: float, val: float, test: float, seed: int) -> dict[str, list]:
    """Shuffle `image_ids` with `seed` and cut them by the ratios, which must sum to at most 1.

    Sizes are rounded down; when the ratios sum to 1 the images left over by rounding go to train,
    when they sum to less the rest of the images is left out (a quick run on part of the data).
    Train and val must not come out empty; test may (ratio 0).
    """
    check_ratios(train, val, test)
    ratios = {"train": train, "val": val, "test": test}
    n = len(image_ids)
    sizes = {name: int(n * ratio + 1e-9) for name, ratio in ratios.items()}
    if abs(sum(ratios.values()) - 1.0) <= 1e-6:
        sizes["train"] = n - sizes["val"] - sizes["test"]
    for name in ("train", "val"):
        if sizes[name] == 0:
            raise LosslabError(
                f"split: split.{name}={ratios[name]} of {n} images leaves the {name} split empty; "
                f"raise split.{name} (lowering the others so they sum to at most 1) or use more images."
            )
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [image_ids[i] for i in order]
    bounds = np.cumsum([0, sizes["train"], sizes["val"], sizes["test"]])
    return {name: shuffled[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLITS)}


def check_ratios(train: float, val: float, test: float) -> None:
    total = train + val + test
    if min(train, val, test) < 0 or total > 1.0 + 1e-6:
        raise LosslabError(
            f"split: the ratios train={train}, val={val}, test={test} must be non-negative and sum to at most 1 "
            f"(they sum to {total:g}); e.g. split.train=0.5 split.val=0.25 split.test=0.25."
        )


def write_split(path: Path, split: dict[str, list], seed: int) -> None:
    payload = {"seed": seed, **{name: list(split[name]) for name in SPLITS}}
    path.write_text(json.dumps(payload, indent=1) + "\n")

"""Train/val/test splits of a dataset's image ids, and split.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from losslab.errors import LosslabError

SPLITS = ("train", "val", "test")


def random_split(image_ids: list, train: float, val: float, test: float, seed: int) -> dict[str, list]:
    """Shuffle `image_ids` with `seed` and cut them by the ratios (which must sum to 1).

    Sizes are rounded down; the images left over by rounding go to train. Train and val must not
    come out empty; test may (ratio 0).
    """
    ratios = {"train": train, "val": val, "test": test}
    if any(r < 0 for r in ratios.values()) or abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise LosslabError(
            f"split: the ratios train={train}, val={val}, test={test} must be non-negative and sum to 1 "
            f"(they sum to {sum(ratios.values()):g}); e.g. split.train=0.6 split.val=0.2 split.test=0.2."
        )
    n = len(image_ids)
    n_val, n_test = int(n * val), int(n * test)
    sizes = {"train": n - n_val - n_test, "val": n_val, "test": n_test}
    for name in ("train", "val"):
        if sizes[name] == 0:
            raise LosslabError(
                f"split: split.{name}={ratios[name]} of {n} images leaves the {name} split empty; "
                f"raise split.{name} (and lower the others so they still sum to 1) or use more images."
            )
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [image_ids[i] for i in order]
    bounds = np.cumsum([0, sizes["train"], sizes["val"], sizes["test"]])
    return {name: shuffled[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLITS)}


def write_split(path: Path, split: dict[str, list], seed: int) -> None:
    payload = {"seed": seed, **{name: list(split[name]) for name in SPLITS}}
    path.write_text(json.dumps(payload, indent=1) + "\n")

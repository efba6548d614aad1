"""Train/val/test splits of a dataset's image ids, and split.json.

Three kinds (`split.name`):
- random: shuffle with a seed and cut by the ratios;
- stratified: iterative stratification (Sechidis et al., 2011) of the images' label sets, so that every
  class is in every split in proportion, even when images hold several classes;
- predefined: the splits are given, by one annotation file per split (handled where datasets are
  loaded), by the split.json of an earlier run (`read_split` + `saved_split`), or by the data itself (data=yolo's
  train/val/test folders: `DATA_WITH_SPLITS`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from losslab.data.images import counted, listing
from losslab.errors import LosslabError

SPLITS = ("train", "val", "test")
KINDS = ("random", "stratified", "predefined")
DATA_WITH_SPLITS = ("yolo",)  # data options naming their own train/val/test: split=predefined alone uses those


def check_split_options(options: dict, own_split: bool = False) -> None:
    """Raise a LosslabError (prefixed "split: ") for split options that cannot work, before data is read.

    Options without `name` (configs of runs from before split kinds existed) are a random split. `own_split`: the
    data names its own splits (DATA_WITH_SPLITS), which split=predefined without files or from_run uses.
    """
    kind = options.get("name", "random")
    if kind not in KINDS:
        raise LosslabError(f"split: split.name={kind}: expected one of {', '.join(KINDS)}.")
    if kind != "predefined":
        check_ratios(options["train"], options["val"], options["test"])
        return
    files = {name: file for name, file in (options.get("files") or {}).items() if file}
    from_run = options.get("from_run")
    if own_split and not files and not from_run:
        return
    if bool(files) == bool(from_run):
        raise LosslabError("split: split=predefined needs either split.files.train=FILE and split.files.val=FILE "
                           "(split.files.test=FILE optional), or split.from_run=RUN_DIR (or its split.json), "
                           f"not {'both' if files else 'neither'}.")
    if files and not {"train", "val"} <= set(files):
        raise LosslabError(f"split: split.files gives {', '.join(sorted(files))} only; both split.files.train and "
                           "split.files.val are needed (split.files.test is optional).")


def random_split(image_ids: list, train: float, val: float, test: float, seed: int) -> dict[str, list]:
    """Shuffle `image_ids` with `seed` and cut them into splits of `split_sizes`; the ratios must sum to at most 1
    (when they sum to less, the rest of the images is left out: a quick run on part of the data)."""
    check_ratios(train, val, test)
    ratios = {"train": train, "val": val, "test": test}
    n = len(image_ids)
    sizes = split_sizes(n, ratios)
    check_not_empty(sizes, ratios, n)
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [image_ids[i] for i in order]
    bounds = np.cumsum([0, sizes["train"], sizes["val"], sizes["test"]])
    return {name: shuffled[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLITS)}


def split_sizes(n: int, ratios: dict[str, float]) -> dict[str, int]:
    """How many of `n` images each split gets: the ratios' shares by largest remainder (Hamilton's method: every
    split gets the whole part of its share, the images left go to the largest fractional parts, ties to the
    earlier split), the part of 1 the ratios leave being a share of images left out. Then every split with a
    positive ratio gets at least one image, taken from the bin with the most to spare, as long as one can spare it.
    """
    shares = np.array([*ratios.values(), max(0.0, 1.0 - sum(ratios.values()))])
    shares /= max(1.0, shares.sum())  # ratios may sum to a rounding error above 1
    quotas = shares * n
    sizes = np.floor(quotas + 1e-9).astype(int)
    by_remainder = np.argsort(-(quotas - sizes), kind="stable")
    sizes[by_remainder[: n - sizes.sum()]] += 1
    for index in np.flatnonzero((shares[:-1] > 0) & (sizes[:-1] == 0)):
        spare = sizes - np.array([1, 1, 1, 0]) * (shares > 0)  # a split keeps one image; the left-out bin none
        donor = int(spare.argmax())
        if spare[donor] > 0:
            sizes[donor] -= 1
            sizes[index] += 1
    return dict(zip(ratios, sizes.tolist(), strict=False))


def check_ratios(train: float, val: float, test: float) -> None:
    total = train + val + test
    if min(train, val, test) < 0 or total > 1.0 + 1e-6:
        raise LosslabError(
            f"split: the ratios train={train}, val={val}, test={test} must be non-negative and sum to at most 1 "
            f"(they sum to {total:g}); e.g. split.train=0.5 split.val=0.25 split.test=0.25."
        )


def check_not_empty(sizes: dict[str, int], ratios: dict[str, float], n: int) -> None:
    """Every split with a positive ratio must hold images, and train and val always; the error says which ratios
    would work."""
    for name in SPLITS:
        if sizes[name] == 0 and (ratios[name] > 0 or name != "test"):
            raise LosslabError(f"split: split.{name}={ratios[name]} of {counted(n, 'image')} leaves the {name} split "
                               f"empty; {working_ratios(n, name, ratios)}")


def working_ratios(n: int, empty: str, ratios: dict[str, float]) -> str:
    """Advice for ratios under which no split comes out empty."""
    if n < 2:
        return f"a run needs at least 2 images (one to train on, one to validate on); the data has {n}."
    if ratios[empty] == 0:
        return (f"raise split.{empty} (lowering the others so they sum to at most 1), e.g. split.train=0.5 "
                "split.val=0.25 split.test=0.25.")
    if n < 3:  # a third split cannot have an image of its own
        return f"with {n} images there is no image left to test on: use split.train=0.5 split.val=0.5 split.test=0."
    share = math.ceil(100 / n) / 100  # the smallest ratio of two decimals worth one image
    return (f"raise split.{empty} to at least {share:g} (one image), lowering the others so they sum to at most 1, "
            "or use more images.")


def stratified_split(image_labels: dict, train: float, val: float, test: float, seed: int) -> dict[str, list]:
    """Split the images (ids -> sets of labels present) so that each label is spread by the ratios.

    Iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011): the rarest label still unplaced goes
    first, each of its images to the split that most lacks that label (ties: the split that most lacks
    images, then at random). Images without labels fill the splits up to their sizes. Ratios summing to
    less than 1 leave the rest of the images out, as random_split does. The same seed gives the same split.
    """
    check_ratios(train, val, test)
    ratios = np.array([train, val, test, max(0.0, 1.0 - train - val - test)])  # the last bin is left out
    rng = np.random.default_rng(seed)
    ids = list(image_labels)
    ids = [ids[i] for i in rng.permutation(len(ids))]  # the order images are placed in: random, seeded
    bins = _stratify([image_labels[image_id] for image_id in ids], ratios, rng)
    split = {name: [image_id for image_id, b in zip(ids, bins, strict=True) if b == i] for i, name in enumerate(SPLITS)}
    check_not_empty({name: len(split[name]) for name in SPLITS}, dict(zip(SPLITS, ratios, strict=False)), len(ids))
    return split


def _stratify(label_sets: list[set], ratios: np.ndarray, rng: np.random.Generator) -> list[int]:
    """The bin of every sample: Sechidis et al.'s Algorithm 1, over the bins with a positive ratio."""
    open_bins = np.flatnonzero(ratios > 0)
    wanted = ratios * len(label_sets)  # images each bin still lacks
    by_label: dict = {}
    for index, labels in enumerate(label_sets):
        for label in labels:
            by_label.setdefault(label, []).append(index)
    wanted_per_label = {label: ratios * len(members) for label, members in by_label.items()}
    unplaced = {label: len(members) for label, members in by_label.items()}
    bins = [-1] * len(label_sets)

    def place(index: int, scores: np.ndarray) -> None:
        best = open_bins[scores[open_bins] == scores[open_bins].max()]
        best = best[wanted[best] == wanted[best].max()]
        chosen = int(rng.choice(best)) if len(best) > 1 else int(best[0])
        bins[index] = chosen
        wanted[chosen] -= 1
        for label in label_sets[index]:
            wanted_per_label[label][chosen] -= 1
            unplaced[label] -= 1

    while any(unplaced.values()):
        rarest = min((label for label, count in unplaced.items() if count), key=lambda label: (unplaced[label], label))
        for index in by_label[rarest]:
            if bins[index] < 0:
                place(index, wanted_per_label[rarest])
    for index in range(len(label_sets)):
        if bins[index] < 0:
            place(index, wanted)
    return bins


def read_split(path: str) -> dict[str, list]:
    """The image ids of each split in a split.json, or in the split.json of the run folder `path`."""
    file = Path(path).expanduser()
    file = file / "split.json" if file.is_dir() else file
    if not file.is_file():
        raise LosslabError(f"split.from_run={path}: {file} does not exist; expected a run folder holding split.json "
                           "or the path of a split.json.")
    try:
        saved = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LosslabError(f"split.from_run={path}: {file} is not valid JSON ({error}).") from error
    if not isinstance(saved, dict) or not all(isinstance(saved.get(name), list) for name in SPLITS):
        raise LosslabError(f"split.from_run={path}: {file} is not a split.json; expected an object with the lists "
                           f"{', '.join(SPLITS)}.")
    return {name: saved[name] for name in SPLITS}


def saved_split(image_ids: list, saved: dict[str, list], source: str) -> dict[str, list]:
    """`saved` (from read_split) checked against the dataset's `image_ids`: every id must exist, none twice."""
    known = set(image_ids)
    missing = [image_id for name in SPLITS for image_id in saved[name] if image_id not in known]
    if missing:
        raise LosslabError(f"split.from_run={source}: {len(missing)} of its image ids are not in this dataset: "
                           f"{listing(missing)}. Use the data that run used (same data.* settings), or another split.")
    check_disjoint(saved, f"split.from_run={source}")
    empty = [name for name in ("train", "val") if not saved[name]]
    if empty:
        raise LosslabError(f"split.from_run={source}: its {' and '.join(empty)} split is empty; a run needs images "
                           "to train and validate on.")
    return saved


def check_disjoint(split: dict[str, list], source: str) -> None:
    """No image may be in two splits (nor twice in one)."""
    seen: dict = {}
    repeated = []
    for name in SPLITS:
        for image_id in split[name]:
            if image_id in seen:
                repeated.append(f"{image_id!r} ({seen[image_id]} and {name})")
            seen.setdefault(image_id, name)
    if repeated:
        raise LosslabError(f"{source}: {len(repeated)} image(s) are in two splits or twice in one: "
                           f"{listing(repeated)}. An image in two splits leaks what is tested into training; "
                           "make the splits disjoint.")


def write_split(path: Path, split: dict[str, list], seed: int) -> None:
    payload = {"seed": seed, **{name: list(split[name]) for name in SPLITS}}
    path.write_text(json.dumps(payload, indent=1) + "\n")

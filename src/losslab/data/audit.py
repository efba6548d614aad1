"""The data audit's numbers: pure functions over what each image of a split holds (`ImageFacts`), whatever format
it was read from. `audit(...)` gives every number `losslab data` prints and writes to data_audit.json; the
suggestions and warnings are read off those numbers, with the thresholds below (documented in docs/data.md).

Object sizes are COCO's: small below 32x32 pixels of area, medium below 96x96, large above, in the pixels of the
image as stored (before any resize), and each box's side sqrt(w h) relative to the image's sqrt(W H). Aspect ratio
is width / height. Duplicates and leaks compare content digests: the same bytes under two ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SMALL_AREA, MEDIUM_AREA = 32**2, 96**2  # COCO's object size boundaries, in pixels of area
IMBALANCE_RATIO = 10.0  # the train split's most / least frequent class at or above this suggests a class-aware loss
SMALL_SHARE = 0.5  # this share of train objects small (or more) suggests a larger model.min_size
MOST_COMMON_SIZES = 5  # image sizes listed, most frequent first
EXAMPLES = 5  # duplicate groups and leaked images named, the rest counted
FIGURE_POINTS = 20_000  # boxes drawn per split at most (an even sample of them): the scatter stays readable


@dataclass(frozen=True)
class ImageFacts:
    """What the audit reads of one image: its id and size, its objects' boxes (XYXY pixels; none for class masks),
    the amount of each class it holds (objects, or pixels for class masks) and the digest of its content."""

    image_id: int | str
    width: int
    height: int
    amounts: np.ndarray  # int64 [number of classes]
    boxes: np.ndarray  # float N×4
    digest: str | None = None


def audit(splits: Mapping[str, Sequence[ImageFacts]], classes: Sequence[str], unit: str = "objects",
          background_first: bool = False, left_out: dict | None = None) -> dict:
    """Every number of the audit: per split (`split_numbers`), the leaks between splits, the thresholds and the
    suggestions. `unit` is what `amounts` count ("objects" or "pixels"); `background_first`: class 0 is the
    background (class masks), not an object class. `left_out`: what the reader left out while loading (crowd
    regions, clipped and dropped boxes), when it counts them."""
    numbers = {
        "unit": unit,
        "classes": list(classes),
        "splits": {name: split_numbers(facts, classes, unit, background_first) for name, facts in splits.items()},
        "leaks": leaks(splits),
        "left_out": left_out,
        "thresholds": {"imbalance_ratio": IMBALANCE_RATIO, "small_share": SMALL_SHARE,
                       "small_area": SMALL_AREA, "medium_area": MEDIUM_AREA},
    }
    numbers["suggestions"] = suggestions(numbers)
    return numbers


def split_numbers(facts: Sequence[ImageFacts], classes: Sequence[str], unit: str = "objects",
                  background_first: bool = False) -> dict:
    """The numbers of one split: images, objects (pixels) per class (and images holding each class), objects per image,
    object sizes and aspect ratios, image sizes, images without objects, boxes touching the image edge, and
    duplicate images."""
    amounts = np.stack([f.amounts for f in facts]) if facts else np.zeros((0, len(classes)), dtype=np.int64)
    objects = amounts[:, 1:] if background_first else amounts
    per_class = amounts.sum(axis=0)
    counted = per_class[1:] if background_first else per_class
    present = counted[counted > 0]
    boxes, per_image, sizes = columns(facts)
    frames = np.repeat(sizes, per_image, axis=0)  # each box's image (width, height)
    return {
        "images": len(facts),
        unit: int(objects.sum()),
        "classes": [{"name": name, unit: int(amount), "images": int(images)} for name, amount, images
                    in zip(classes, per_class, (amounts > 0).sum(axis=0), strict=True)],
        "imbalance_ratio": round(float(present.max() / present.min()), 2) if len(present) else None,
        "classes_without_objects": [name for name, amount in zip(classes[int(background_first):], counted,
                                                                 strict=True) if amount == 0],
        "images_without_objects": int((objects.sum(axis=1) == 0).sum()),
        "objects_per_image": spread(per_image) if len(boxes) else None,
        "sizes": size_buckets(boxes),
        "relative_size": spread(box_sides(boxes) / np.sqrt(frames.prod(axis=1))) if len(boxes) else None,
        "aspect_ratio": spread(aspect_ratios(boxes)) if len(boxes) else None,
        # boxes reaching 0 or their image's width or height: objects the frame cuts, and boxes the reader clipped
        "touching_edge": int(((boxes[:, :2] <= 0).any(axis=1) | (boxes[:, 2:] >= frames).any(axis=1)).sum()),
        "image_sizes": image_sizes(sizes),
        "duplicates": duplicates(facts),
    }


def spread(values: np.ndarray) -> dict | None:
    """Minimum, 10th percentile, median, mean, 90th percentile and maximum, rounded for reading."""
    if len(values) == 0:
        return None
    low, p10, median, p90, high = np.percentile(values, [0, 10, 50, 90, 100])
    return {key: round(float(value), 3) for key, value in
            (("min", low), ("p10", p10), ("median", median), ("mean", np.mean(values)), ("p90", p90), ("max", high))}


def box_sides(boxes: np.ndarray) -> np.ndarray:
    """Each box's side sqrt(width height), in pixels."""
    return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def aspect_ratios(boxes: np.ndarray) -> np.ndarray:
    """Each box's width / height."""
    return (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1])


def size_buckets(boxes: np.ndarray) -> dict[str, int]:
    """How many boxes are small, medium and large by COCO's areas."""
    areas = box_sides(boxes) ** 2
    small = int((areas < SMALL_AREA).sum())
    medium = int(((areas >= SMALL_AREA) & (areas < MEDIUM_AREA)).sum())
    return {"small": small, "medium": medium, "large": len(boxes) - small - medium}


def columns(facts: Sequence[ImageFacts]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every box of the images (N×4), how many each image has, and each image's (width, height)."""
    if not facts:
        return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64)
    per_image = np.array([len(f.boxes) for f in facts])
    sizes = np.array([(f.width, f.height) for f in facts], dtype=np.int64)
    return np.concatenate([f.boxes for f in facts]).reshape(-1, 4), per_image, sizes


def image_sizes(sizes: np.ndarray) -> dict | None:
    """Widths and heights (spread) of the images' (width, height) rows, how many distinct sizes, and the most
    common (width, height, images)."""
    if not len(sizes):
        return None
    distinct, counts = np.unique(sizes, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:MOST_COMMON_SIZES]
    return {"width": spread(sizes[:, 0]), "height": spread(sizes[:, 1]), "distinct": len(distinct),
            "most_common": [[int(w), int(h), int(n)] for (w, h), n in zip(distinct[order], counts[order],
                                                                          strict=True)]}


def duplicates(facts: Sequence[ImageFacts]) -> dict:
    """Images of one split with the same content: how many groups, how many images beyond the first of each
    group, and the ids of the first groups."""
    groups = [ids for ids in _ids_by_digest(facts).values() if len(ids) > 1]
    return {"groups": len(groups), "images": sum(len(ids) - 1 for ids in groups), "examples": groups[:EXAMPLES]}


def leaks(splits: Mapping[str, Sequence[ImageFacts]]) -> dict:
    """Images whose content is in two splits or more: how many distinct contents, how many per pair of splits
    ("train/val": n), and the ids of the first ones in each split."""
    found: dict[str, dict[str, list]] = defaultdict(dict)  # digest -> split -> ids
    for name, facts in splits.items():
        for digest, ids in _ids_by_digest(facts).items():
            found[digest][name] = ids
    leaked = [by_split for by_split in found.values() if len(by_split) > 1]
    names = list(splits)
    pairs = {f"{a}/{b}": sum(a in by_split and b in by_split for by_split in leaked)
             for i, a in enumerate(names) for b in names[i + 1:]}
    return {"images": len(leaked), "pairs": {pair: n for pair, n in pairs.items() if n},
            "examples": leaked[:EXAMPLES]}


def _ids_by_digest(facts: Sequence[ImageFacts]) -> dict[str, list]:
    ids = defaultdict(list)
    for f in facts:
        if f.digest is not None:
            ids[f.digest].append(f.image_id)
    return ids


def figure_points(splits: Mapping[str, Sequence[ImageFacts]]) -> dict[str, dict[str, np.ndarray]]:
    """What data_audit.png scatters and bins, per split: each box's side and aspect ratio (at most FIGURE_POINTS
    of them, evenly sampled) and each image's width and height."""
    points = {}
    for name, facts in splits.items():
        boxes, _, sizes = columns(facts)
        boxes = boxes[np.linspace(0, len(boxes) - 1, FIGURE_POINTS).astype(int)] if len(boxes) > FIGURE_POINTS \
            else boxes
        points[name] = {"boxes": np.stack([box_sides(boxes), aspect_ratios(boxes)], axis=1), "images": sizes}
    return points


def suggestions(numbers: dict) -> list[str]:
    """One line per change the audit's numbers suggest, from the train split; nothing is changed."""
    train = numbers["splits"].get("train")
    if not train or not train["images"]:
        return []
    lines = []
    ratio = train["imbalance_ratio"]
    if ratio is not None and ratio >= IMBALANCE_RATIO:
        lines.append(f"class imbalance {ratio:.3g}:1 in train (at or above {IMBALANCE_RATIO:g}:1): try "
                     "loss=weighted_ce (weights from the train counts) or loss=focal")
    if train["classes_without_objects"]:
        lines.append(f"train has no {numbers['unit']} of {', '.join(train['classes_without_objects'])}: the model "
                     "cannot learn them; add examples or leave those classes out")
    boxes = sum(train["sizes"].values())
    if boxes and train["sizes"]["small"] / boxes >= SMALL_SHARE:
        lines.append(f"{train['sizes']['small'] / boxes:.0%} of train objects are small (under 32x32 px, at or above "
                     f"{SMALL_SHARE:.0%}): try a larger model.min_size, so that resizing enlarges them")
    if numbers["leaks"]["images"]:
        pairs = ", ".join(f"{pair} {n}" for pair, n in numbers["leaks"]["pairs"].items())
        lines.append(f"{numbers['leaks']['images']} image(s) are in two splits ({pairs}): the validation numbers "
                     "flatter the model; remove the copies from one split")
    return lines


def run_warnings(numbers: dict) -> list[str]:
    """What a training run warns of, one line each: images in two splits, classes without a training object."""
    lines = []
    if numbers["leaks"]["images"]:
        pairs = ", ".join(f"{pair} {n}" for pair, n in numbers["leaks"]["pairs"].items())
        lines.append(f"{numbers['leaks']['images']} image(s) are in two splits ({pairs}; same file content): the "
                     "validation numbers flatter the model (data_audit.json names them)")
    train = numbers["splits"]["train"]
    if train["classes_without_objects"]:
        lines.append(f"the train split has no {numbers['unit']} of {', '.join(train['classes_without_objects'])}: "
                     "the model cannot learn them")
    return lines

"""COCO's run-length encoded masks (RLE): checking one against its image, and handing it to pycocotools."""

from __future__ import annotations

from pycocotools import mask as mask_utils


def rle_problems(name: str, rle: dict, height: int, width: int) -> list[str]:
    """What makes the RLE of `name` unusable on a `height` x `width` image: its size, or counts that do not cover it."""
    if list(rle.get("size", [])) != [height, width] or not isinstance(rle.get("counts"), list | str):
        return [f"{name}: RLE size {rle.get('size')} for a {height}x{width} (height x width) image"]
    counts = rle["counts"]
    if isinstance(counts, list) and not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        return [f"{name}: RLE counts must be whole numbers"]
    runs = counts if isinstance(counts, list) else compressed_counts(counts)
    if sum(runs) != height * width or min(runs, default=0) < 0:
        return [f"{name}: RLE counts cover {sum(runs)} pixels{' (some negative)' if min(runs, default=0) < 0 else ''}"
                f", not the {height}x{width} = {height * width} of its image"]
    return []


def compressed_counts(counts: str) -> list[int]:
    """The run lengths a compressed RLE string encodes (COCO maskApi's rleFrString, without decoding the mask).

    Each number is written in groups of 5 bits, one character (48 + group) each: bit 0x20 says that another
    group follows, bit 0x10 of the last group is the sign. From the fourth number on, each is stored as its
    difference to the number two before it.
    """
    runs: list[int] = []
    value = shift = 0
    for character in counts.encode("ascii", errors="replace"):
        group = character - 48
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value |= -1 << shift
        runs.append(value + runs[-2] if len(runs) > 2 else value)
        value = shift = 0
    return runs


def pycocotools_rle(segmentation: dict | list, height: int, width: int) -> dict:
    """pycocotools' RLE of polygons or of an RLE (uncompressed counts are a list, compressed ones a string)."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation

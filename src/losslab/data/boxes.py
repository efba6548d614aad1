"""Annotated boxes fitted to their image: clipped to its edge, counted where they cross it, and dropped (with one
warning each kind) where nothing of them is left."""

from __future__ import annotations

import numpy as np

from losslab.data.images import listing


def fit_boxes(boxes: np.ndarray, width: int | np.ndarray, height: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`boxes` (N×4 XYXY) clipped to the image (or each to its image's size), and which keep a positive size."""
    fitted = boxes.clip(0, np.stack([width, height, width, height], axis=-1)).astype(np.float32)
    return fitted, (fitted[:, 2] > fitted[:, 0]) & (fitted[:, 3] > fitted[:, 1])


def crosses_edge(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Which of `boxes` (N×4 XYXY) reach past the image's edge: what fit_boxes clips. (Comparing the clipped float32
    boxes with the given ones would count every box whose coordinates float32 cannot hold exactly.)"""
    limits = np.stack(np.broadcast_arrays(width, height), axis=-1)  # one size, or one per box
    return ((boxes[:, :2] < 0) | (boxes[:, 2:] > limits)).any(axis=1)


def dropped_boxes(boxes: np.ndarray, valid: np.ndarray, names: list[str]) -> tuple[list[str], list[str]]:
    """Of the boxes fit_boxes dropped (`valid` false; `names` names every box), those with a NaN or infinite
    coordinate and those left with no width or height: (non-finite, degenerate)."""
    finite = np.isfinite(boxes).all(axis=1)
    dropped = [(name, ok_number) for name, ok, ok_number in zip(names, valid, finite, strict=True) if not ok]
    return [name for name, ok_number in dropped if not ok_number], [name for name, ok_number in dropped if ok_number]


def dropped_box_warnings(nonfinite: list[str], degenerate: list[str]) -> list[str]:
    """One warning for the boxes dropped for a NaN or infinite coordinate, one for those with no width or height."""
    warnings = []
    if nonfinite:
        warnings.append(f"dropped {len(nonfinite)} box(es) with a NaN or infinite coordinate ({listing(nonfinite)})")
    if degenerate:
        warnings.append(f"dropped {len(degenerate)} box(es) with zero or negative width or height after clipping to "
                        f"the image ({listing(degenerate)})")
    return warnings

"""Mask R-CNN's masks placed in the photo, one box at a time.

The mask head gives each detection a small probability map of its box (28 x 28). torchvision pastes every one
into a full-size float image ([100, 1, H, W] for a photo: hundreds of MB, most of the inference time on full-size
photos), only for them to be cut at 0.5. Here each map is resized into its own box region only, exactly as
torchvision's paste_masks_in_image does (one pixel of padding, the same rounding and bilinear resize), and cut
at 0.5 there: the same pixels, without the full-size floats.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

MASK_THRESHOLD = 0.5  # mask probabilities above this are the object (torchvision's and COCO's convention)


def mask_regions(crops: Tensor, boxes: Tensor, height: int, width: int) -> Iterator[tuple[Tensor, slice, slice]]:
    """For each detection, the boolean mask of the part of its box inside the image and where that part lies
    (rows, columns), from its [M, M] probability map `crops[i]` and its box in the image's pixels."""
    padded, scale = expand_masks(crops[:, None].float(), padding=1)
    expanded = expand_boxes(boxes.float(), scale).to(torch.int64).tolist()
    for crop, (x0, y0, x1, y1) in zip(padded[:, 0], expanded, strict=True):
        box_height, box_width = max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1)
        resized = F.interpolate(crop[None, None], size=(box_height, box_width), mode="bilinear",
                                align_corners=False)[0, 0]
        top, bottom, left, right = max(y0, 0), min(y1 + 1, height), max(x0, 0), min(x1 + 1, width)
        inside = resized[max(top - y0, 0):max(bottom - y0, 0), max(left - x0, 0):max(right - x0, 0)]
        yield inside > MASK_THRESHOLD, slice(top, max(bottom, top)), slice(left, max(right, left))


def paste_masks(crops: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """Boolean [N, height, width] masks of the detections (for drawing a few kept ones)."""
    masks = torch.zeros((len(crops), height, width), dtype=torch.bool)
    for mask, (region, rows, columns) in zip(masks, mask_regions(crops, boxes, height, width), strict=True):
        mask[rows, columns] = region
    return masks


def mask_rles(crops: Tensor, boxes: Tensor, height: int, width: int) -> list[dict]:
    """COCO RLEs (counts as str) of the detections' masks, encoded from one reused full-size buffer."""
    buffer = np.zeros((height, width), dtype=np.uint8, order="F")
    rles = []
    for region, rows, columns in mask_regions(crops, boxes, height, width):
        buffer[rows, columns] = region.numpy()
        rle = mask_utils.encode(buffer[:, :, None])[0]
        rle["counts"] = rle["counts"].decode("ascii")
        rles.append(rle)
        buffer[rows, columns] = 0
    return rles

"""Objects drawn on images (boxes, names, translucent masks) in one colour per class, for predict and
show-augment."""

from __future__ import annotations

import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

# matplotlib's tab10: class k gets colour k-1, so a class has the same colour in every image.
CLASS_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
MASK_ALPHA = 0.4


def draw_objects(image: torch.Tensor, boxes: torch.Tensor, labels: list[int], names: list[str],
                 masks: torch.Tensor | None = None, fill_labels: bool = False) -> torch.Tensor:
    """The uint8 CHW `image` with each object's translucent mask (boolean N x H x W, when given) and its box
    named by `names`, in its class's colour (torchvision's draw_segmentation_masks and draw_bounding_boxes)."""
    if not labels:
        return image
    colours = [CLASS_COLOURS[(label - 1) % len(CLASS_COLOURS)] for label in labels]
    if masks is not None:
        image = draw_segmentation_masks(image, masks, alpha=MASK_ALPHA, colors=colours)
    return draw_bounding_boxes(image, boxes, labels=names, colors=colours, width=2, fill_labels=fill_labels)

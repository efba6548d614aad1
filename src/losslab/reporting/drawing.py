"""Objects drawn on images (boxes, names, translucent masks) in one colour per class, for predict and
show-augment, at a line width and font size that grow with the image so that a label stays readable on a photo."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

# matplotlib's tab10: class k gets colour k-1, so a class has the same colour in every image.
CLASS_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
MASK_ALPHA = 0.4
# A TrueType font that is always there (matplotlib ships it): Pillow's built-in bitmap font has one small size.
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def draw_objects(image: torch.Tensor, boxes: torch.Tensor, labels: list[int], names: list[str],
                 masks: torch.Tensor | None = None) -> torch.Tensor:
    """The uint8 CHW `image` with each object's translucent mask (boolean N x H x W, when given) and its box
    named by `names` on a filled label, in its class's colour (torchvision's draw_segmentation_masks and
    draw_bounding_boxes), lines and letters sized by `drawing_sizes`."""
    if not labels:
        return image
    colours = [CLASS_COLOURS[(label - 1) % len(CLASS_COLOURS)] for label in labels]
    if masks is not None:
        image = draw_segmentation_masks(image, masks, alpha=MASK_ALPHA, colors=colours)
    line_width, font_size = drawing_sizes(*image.shape[-2:])
    return draw_bounding_boxes(image, boxes, labels=names, colors=colours, width=line_width, font=str(FONT),
                               font_size=font_size, fill_labels=True,
                               label_colors=[text_colour([channel / 255 for channel in colour]) for colour in colours])


def drawing_sizes(height: int, width: int) -> tuple[int, int]:
    """Line width and font size in pixels for an image: 0.3% and 2.5% of its mean side, at least 2 and 10 px
    (2 and 14 px on a 640 x 480 photo, 4 and 38 px on a 1920 x 1080 one)."""
    side = (height + width) / 2
    return max(2, round(side * 0.003)), max(10, round(side * 0.025))


def text_colour(background) -> str:
    """Black or white, whichever reads better on `background` (RGB or RGBA in [0, 1]): white on colours darker
    than mid grey by their luma (ITU-R BT.601 weights)."""
    red, green, blue = background[:3]
    return "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"

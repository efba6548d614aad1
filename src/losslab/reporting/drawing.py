"""Objects drawn on images (boxes, names, translucent masks with a contrasting edge) in one colour per class, for
predict and show-augment, at a line width and font size that grow with the image so that a label stays readable on
a photo.

Masks are drawn one at a time, each inside its own region: torchvision's draw_segmentation_masks takes a full-size
boolean stack and sums it into int64 (gigabytes for 60 masks on a 6000 x 3375 photo), and blackens every pixel two
masks share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import matplotlib
import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

# matplotlib's tab10: class k gets colour k-1, so a class has the same colour in every image.
CLASS_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
MASK_ALPHA = 0.4
BLEND_ROWS = 512  # image rows blended at a time: the float copy of a 6000 px wide photo stays under 40 MB
# A TrueType font that is always there (matplotlib ships it): Pillow's built-in bitmap font has one small size.
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def draw_objects(image: Tensor, boxes: Tensor, labels: list[int], names: list[str],
                 masks: Tensor | Iterable[Region] | None = None) -> Tensor:
    """The uint8 CHW `image` with each object's mask (a boolean N x H x W stack, or each object's Region, see
    draw_masks) and its box named by `names` on a filled label, in its class's colour (torchvision's
    draw_bounding_boxes), lines and letters sized by `drawing_sizes`."""
    if not labels:
        return image
    colours = [CLASS_COLOURS[(label - 1) % len(CLASS_COLOURS)] for label in labels]
    line_width, font_size = drawing_sizes(*image.shape[-2:])
    if masks is not None:
        image = draw_masks(image, regions(masks) if isinstance(masks, Tensor) else masks, colours, line_width)
    return draw_bounding_boxes(image, boxes, labels=names, colors=colours, width=line_width, font=str(FONT),
                               font_size=font_size, fill_labels=True,
                               label_colors=[text_colour([channel / 255 for channel in colour]) for colour in colours])


Region = tuple[Tensor, slice, slice]  # a boolean mask of part of the image, and where it lies (rows, columns)


def regions(masks: Tensor) -> Iterator[Region]:
    """Each boolean [H, W] mask of `masks` cut to the rows and columns it covers."""
    for mask in masks:
        rows, columns = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
        top, bottom = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)  # an empty mask: an empty region
        left, right = (int(columns[0]), int(columns[-1]) + 1) if len(columns) else (0, 0)
        yield mask[top:bottom, left:right], slice(top, bottom), slice(left, right)


def draw_masks(image: Tensor, masks: Iterable[Region], colours: list[tuple[int, int, int]], edge_width: int,
               alpha: float = MASK_ALPHA) -> Tensor:
    """The uint8 [3, H, W] `image` with every mask tinted in its colour (`alpha`) and edged by an opaque line: an
    outer band of `edge_width` px in black or white, whichever stands out from the colour, and an inner one of the
    colour, so the edge shows on any background, a shape of the mask's own colour included.

    Masks are drawn in order, each in its region only, in memory of a few image-sized planes whatever their number.
    Where masks overlap, the later one's tint is drawn (never a dark patch) and the earlier one's edge stays visible.
    """
    painted = image.clone()  # what the tinted pixels blend towards; the edges are drawn into it, opaque
    covered = torch.zeros(image.shape[-2:], dtype=torch.bool)
    edged = torch.zeros(image.shape[-2:], dtype=torch.bool)
    for (mask, rows, columns), colour in zip(masks, colours, strict=True):
        outer, inner = edges(mask, edge_width)
        fill = mask & ~edged[rows, columns]  # an earlier mask's edge stays on top
        region = painted[:, rows, columns]
        region[:, fill] = torch.tensor(colour, dtype=torch.uint8)[:, None]
        region[:, outer] = torch.tensor(contrast(colour), dtype=torch.uint8)[:, None]
        region[:, inner] = torch.tensor(colour, dtype=torch.uint8)[:, None]
        covered[rows, columns] |= mask
        edged[rows, columns] |= outer | inner
    return blend(image, painted, covered & ~edged, edged, alpha)


def edges(mask: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """The mask's pixels within `width` px of its border (outside the mask or the region), and those `width` px
    further in: the outer and the inner band of its edge."""
    outer = _border(mask, width)
    return outer, _border(mask, 2 * width) & ~outer


def _border(mask: Tensor, width: int) -> Tensor:
    """The mask's pixels with a pixel outside it (or outside the region) at most `width` px away along rows and
    columns (a square window), from boolean ORs alone: a photo-sized mask takes milliseconds, whatever `width`."""
    if not mask.numel():
        return mask
    height, breadth = mask.shape
    outside = torch.ones(height + 2 * width, breadth + 2 * width, dtype=torch.bool)
    outside[width:width + height, width:width + breadth] = ~mask
    window = 2 * width + 1
    return mask & _any_in_window(_any_in_window(outside, window, 0), window, 1)


def _any_in_window(values: Tensor, length: int, dim: int) -> Tensor:
    """out[i] = values[i : i + length].any() along `dim` (the output is length - 1 shorter), by doubling spans."""
    span, spanned = 1, values
    while 2 * span <= length:  # spanned[i] holds values[i : i + 2 * span] after each step
        size = spanned.size(dim) - span
        spanned = spanned.narrow(dim, 0, size) | spanned.narrow(dim, span, size)
        span *= 2
    size = values.size(dim) - length + 1
    return spanned.narrow(dim, 0, size) | spanned.narrow(dim, length - span, size)


def blend(image: Tensor, painted: Tensor, tinted: Tensor, opaque: Tensor, alpha: float) -> Tensor:
    """`image` with `painted` mixed in at `alpha` where `tinted`, and taken as it is where `opaque`; a few rows at a
    time, so the float copy stays small."""
    out = torch.where(opaque, painted, image)
    for top in range(0, image.shape[-2], BLEND_ROWS):
        rows = slice(top, top + BLEND_ROWS)
        mixed = (image[:, rows].float() * (1 - alpha) + painted[:, rows].float() * alpha).round().to(torch.uint8)
        out[:, rows] = torch.where(tinted[rows], mixed, out[:, rows])
    return out


def contrast(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever stands out from `colour` (RGB 0-255)."""
    return (255, 255, 255) if text_colour([channel / 255 for channel in colour]) == "white" else (0, 0, 0)


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

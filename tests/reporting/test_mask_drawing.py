"""Masks drawn so a person sees each one and its edge (predict and show-augment, detection and segmentation), without
dark patches where they overlap, in bounded memory on large photos (issue 30, items 5 and 13)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from losslab.reporting.drawing import CLASS_COLOURS, draw_masks, drawing_sizes, regions
from losslab.reporting.segmentation_figures import draw_class_mask

# The benchmark's own measurement: a new process draws the masks as `losslab predict` does and reports its peak.
_script = importlib.util.spec_from_file_location(
    "bench_mask_drawing", Path(__file__).resolve().parents[2] / "scripts" / "bench_mask_drawing.py")
bench = importlib.util.module_from_spec(_script)
_script.loader.exec_module(bench)

RED = CLASS_COLOURS[3]  # class 4's colour (214, 39, 40)


def solid(height: int, width: int, colour: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(colour, dtype=torch.uint8)[:, None, None].expand(3, height, width).clone()


def test_overlapping_masks_show_the_later_tint_not_a_dark_patch():
    image = solid(40, 60, (128, 128, 128))
    first, second = torch.zeros(2, 40, 60, dtype=torch.bool)
    first[5:35, 5:40], second[5:35, 20:55] = True, True
    drawn = draw_masks(image, regions(torch.stack([first, second])), [CLASS_COLOURS[0], CLASS_COLOURS[1]], 2)
    shared = drawn[:, 15:25, 26:34]  # inside both masks, away from the edges
    expected = (torch.tensor([128.0] * 3) * 0.6 + torch.tensor(CLASS_COLOURS[1], dtype=torch.float32) * 0.4).round()
    assert torch.equal(shared, expected.to(torch.uint8)[:, None, None].expand_as(shared))
    assert torch.equal(drawn[:, :, 57:], image[:, :, 57:])  # outside every mask: the image untouched


def test_a_mask_over_a_shape_of_its_own_colour_shows_its_edge():
    # A red shape filling the mask: a red tint over it is invisible, the edge is not.
    image = solid(600, 800, (200, 200, 200))
    image[:, 100:400, 200:600] = torch.tensor(RED, dtype=torch.uint8)[:, None, None]
    classes = torch.zeros(600, 800, dtype=torch.int64)
    classes[100:400, 200:600] = 4
    drawn = draw_class_mask(image, classes, ["background", "a", "b", "c", "shape"])
    line_width, _ = drawing_sizes(600, 800)
    fill = drawn[:, 250, 400]
    assert fill.tolist() == list(RED)  # the tint of a red shape in red: no change
    outer = drawn[:, 250, 200:200 + line_width]  # the outer band of the mask's left edge
    assert (outer != fill[:, None]).any(dim=0).all()  # every pixel of it differs from the fill
    assert (outer.int().sum(dim=0) == 3 * 255).all()  # white: it stands out from the red
    assert drawn[:, 250, 200 + line_width].tolist() == list(RED)  # then the inner band, in the class's colour
    assert torch.equal(drawn[:, 500:600, :], image[:, 500:600, :])  # away from the mask: the photo as it was


def test_the_segmentation_legend_grows_with_the_image():
    classes = ["background", "circle"]
    legend_heights = {}
    for height, width in ((64, 64), (600, 800), (1080, 1920)):
        mask = torch.zeros(height, width, dtype=torch.int64)
        mask[: height // 2, : width // 2] = 1
        drawn = draw_class_mask(torch.zeros(3, height, width, dtype=torch.uint8), mask, classes)
        legend = drawn[:, height:]
        legend_heights[height] = legend.shape[1]
        ink = (legend < 128).all(dim=0)  # the letters and the swatch's outline (the legend is white)
        text_rows = ink[:, drawing_sizes(height, width)[1] + 8:].any(dim=1)
        assert text_rows.sum() >= 0.6 * drawing_sizes(height, width)[1]  # letters as tall as the font says
    assert legend_heights[64] < legend_heights[600] < legend_heights[1080]
    assert legend_heights[600] >= 24  # an 800 x 600 drawing's legend used to be 18 px of a 10 px bitmap font


def test_drawing_100_masks_on_a_phone_photo_adds_under_half_a_gigabyte():
    # torchvision's draw_segmentation_masks took a full-size boolean stack and summed it in int64: 1.2 GB more here.
    added = bench.peak_gib(3024, 4032, 100) - bench.peak_gib(3024, 4032, 0)
    assert added < 0.5, f"{added:.2f} GiB more"

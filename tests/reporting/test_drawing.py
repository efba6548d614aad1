"""Boxes, labels and masks drawn for predict and show-augment: labels that grow with the image, on a filled box
in the class's colour, in the text colour that reads on it."""

from __future__ import annotations

import pytest
import torch

from losslab.reporting.drawing import CLASS_COLOURS, draw_objects, drawing_sizes, text_colour


def label_box(drawn: torch.Tensor, colour: tuple[int, int, int], box: list[int]) -> tuple[int, int]:
    """Height and width of the filled label at the top left inside `box`: the rows and columns there that the
    class colour fills for more than half."""
    x0, y0, x1, y1 = box
    region = (drawn[:, y0 + 8 : y1 - 8, x0 + 8 : x1 - 8] == torch.tensor(colour)[:, None, None]).all(0)
    rows = region.float().mean(1) > 0.05
    label_rows = region[rows]
    columns = label_rows.float().mean(0) > 0.5
    return int(rows.sum()), int(columns.sum())


@pytest.mark.parametrize(("height", "width", "least", "most"), [(1080, 1920, 30, 60), (480, 640, 10, 25)])
def test_labels_grow_with_the_image_and_sit_on_a_filled_box(height, width, least, most):
    box = [100, 100, width - 100, height - 100]
    drawn = draw_objects(torch.zeros(3, height, width, dtype=torch.uint8), torch.tensor([box], dtype=torch.float32),
                         [1], ["circle 0.93"])
    label_height, label_width = label_box(drawn, CLASS_COLOURS[0], box)
    assert least <= label_height <= most  # a 10 px bitmap font was unreadable on a 1920 x 1080 photo
    assert label_width > 4 * label_height  # "circle 0.93" on one line, its box filled behind it
    text = drawn[:, 100 : 100 + most, 100 : 100 + 8 * most]
    assert (text > 200).all(0).sum() > 20  # white letters: the class's dark blue is the background


def test_line_width_and_font_grow_with_the_image():
    assert drawing_sizes(64, 64) == (2, 10)
    assert drawing_sizes(480, 640) == (2, 14)
    assert drawing_sizes(1080, 1920) == (4, 38)


def test_text_is_white_on_dark_colours_and_black_on_light_ones():
    assert text_colour((31 / 255, 119 / 255, 180 / 255)) == "white"  # tab10 blue, class 1
    assert text_colour((255 / 255, 127 / 255, 14 / 255)) == "black"  # tab10 orange, class 2
    assert text_colour((0.03, 0.19, 0.42, 1.0)) == "white" and text_colour((0.97, 0.98, 1.0, 1.0)) == "black"

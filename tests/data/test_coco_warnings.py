"""What loading a COCO file warns about names the annotations and says what is wrong with them."""

from __future__ import annotations

import logging
import math

from test_coco import annotation, image, rectangle, write_coco

from losslab.data.coco import CocoDataset


def _warnings(caplog, tmp_path, annotations):
    with caplog.at_level(logging.INFO, logger="losslab.data.coco"):
        dataset = CocoDataset(*map(str, write_coco(tmp_path, [image(1), image(2)], annotations)))
    return dataset, [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_nan_box_is_reported_as_such_not_as_a_zero_width(tmp_path, caplog):
    dataset, warnings = _warnings(caplog, tmp_path, [
        annotation(1, 1, 1, [2, 2, 10, 8]),
        annotation(2, 1, 1, [math.nan, 2, 10, 8]),
        annotation(3, 2, 1, [5, 5, 0, 6]),
    ])
    assert [len(target["boxes"]) for _, target in dataset] == [1]  # image 2 had only the zero-width box
    assert len(warnings) == 2
    assert "dropped 1 box(es) with a NaN or infinite coordinate (id 2)" in warnings[0]
    assert "dropped 1 box(es) with zero or negative width or height after clipping to the image (id 3)" in warnings[1]


def test_a_polygon_of_fewer_than_three_points_is_named_in_its_warning(tmp_path, caplog):
    dataset, warnings = _warnings(caplog, tmp_path, [
        annotation(1, 1, 1, [2, 2, 10, 8], segmentation=rectangle(2, 2, 12, 10)),
        annotation(2, 2, 1, [5, 5, 6, 6], segmentation=[[5, 5, 11, 11]]),  # two points: no area
    ])
    assert dataset.has_masks
    assert warnings == [f"{tmp_path / 'instances.json'}: 1 object(s) have no usable segmentation (none, or no polygon "
                        "of 3 points or more) while others have one; their box is used as their mask (annotation "
                        "id 2)"]


def test_only_boxes_that_cross_the_image_edge_count_as_clipped(tmp_path, caplog):
    # 10.1, 20.3 ... have no exact float32: such a box inside the image is not clipped (it used to count).
    with caplog.at_level(logging.INFO, logger="losslab.data.coco"):
        dataset = CocoDataset(*map(str, write_coco(tmp_path, [image(1), image(2)], [
            annotation(1, 1, 1, [10.1, 20.3, 20.7, 15.9]),
            annotation(2, 1, 3, [0.1, 0.3, 47.7, 39.6]),  # ends 0.2 and 0.1 px short of the 48x40 image's edge
            annotation(3, 2, 1, [40.5, 30.2, 9.0, 5.0]),  # reaches past the right edge
            annotation(4, 2, 1, [-2.0, 3.0, 10.0, 5.0]),  # starts left of the image
        ])))
    assert [len(target["boxes"]) for _, target in dataset] == [2, 2]
    (message,) = [r.getMessage() for r in caplog.records if "clipped" in r.getMessage()]
    assert message.endswith(": 2 box(es) clipped to the image edge, 0 crowd region(s) left out of the targets")

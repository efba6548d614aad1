"""read_coco: a COCO file's annotations read into columns a chunk at a time, everything else as json reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from losslab.data import coco_file
from losslab.data.coco_file import NO_ID, Annotations, read_coco

ANNOTATIONS = [
    {"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 2.5, 3, 4], "segmentation": [[0, 0, 4, 0, 4, 4], [1, 1]]},
    {"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": 1,
     "segmentation": {"size": [4, 4], "counts": [16]}},
    {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": [["1", 2, 3, 4, 5, None]]},
    {"id": 4, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": [[1, "x", 3, 4, 5, 6]]},
]


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_annotations_become_columns_and_the_rest_is_read_as_json_reads_it(monkeypatch, chunk):
    monkeypatch.setattr(coco_file, "CHUNK", chunk)
    document = {"info": {"year": 2024, "nested": [{"a": 1}]}, "images": [{"id": 1, "file_name": "a.jpg"}],
                "annotations": ANNOTATIONS, "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    for text in (json.dumps(document), json.dumps(document, indent=2), f" \n{json.dumps(document)}\t\n"):
        content = read_coco(text)
        assert {key: value for key, value in content.items() if key != "annotations"} == {
            key: value for key, value in document.items() if key != "annotations"}
        columns: Annotations = content["annotations"]
        assert len(columns) == 4 and columns.ids == [1, NO_ID, 3, 4] and columns.name(1) == "without id of image 2"
        assert columns.image_ids == [1, 2, 2, 2] and columns.category_ids == [2, 1, 1, 1]
        assert list(columns.crowd) == [0, 1, 0, 0]
        assert np.frombuffer(columns.boxes).reshape(-1, 4)[0].tolist() == [1, 2.5, 3, 4]
        # polygons of six coordinates or more; numeric strings and null read as numpy reads them (NaN)
        assert list(columns.polygon_counts) == [1, 0, 1, 0] and list(columns.lengths) == [6, 6]
        assert np.array_equal(np.frombuffer(columns.coords), [0, 0, 4, 0, 4, 4, 1, 2, 3, 4, 5, np.nan], equal_nan=True)
        assert columns.rles == {1: ANNOTATIONS[1]["segmentation"]}
        assert columns.crowds == {2: [ANNOTATIONS[1]["segmentation"]]}
        assert columns.polygon_problems == {3: "annotation id 4: polygon coordinates must be numbers"}


@pytest.mark.parametrize("text", [
    '{"images": [], "annotations": [{"image_id": 1,, }]}',
    '{"images": [], "annotations": [{"image_id": 1} {"image_id": 2}]}',
    '{"images": [], "annotations": [{"image_id": 1},]}',
    '{"images": [] "annotations": []}',
    '{"images": [], "annotations": []} x',
    '{"images": [], "annotations": [',
    '{images: []}',
    '{"images" []}',
    '',
    '\ufeff{"images": []}',
])
def test_broken_json_raises_what_json_raises_where_json_raises_it(text):
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as raised:
        read_coco(text)
    assert (raised.value.msg, raised.value.pos) == (expected.value.msg, expected.value.pos)


def test_other_top_level_values_are_decoded_as_is():
    assert read_coco("[1, 2]") == [1, 2]
    assert read_coco("{}") == {} and read_coco('{"annotations": {"a": 1}}') == {"annotations": {"a": 1}}

"""All twelve COCO summary numbers, the annotation file's own object areas and image names in the ground truth that
evaluation writes, on hand-built cases (issue 30, items 6 and 7)."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from losslab.evaluation.metrics import COCO_SUMMARY, coco_ground_truth, coco_metrics, coco_results
from losslab.tasks.detection import Detection, with_file_names

SIZE = [(200, 200)]


def boxes(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def test_the_twelve_numbers_are_cocoevals_and_hand_checked():
    # One image: a small (10x10), a medium (50x50) and a large (120x120) cat; the small and the large are found.
    target = {"boxes": boxes([0, 0, 10, 10], [20, 20, 70, 70], [80, 80, 200, 200]), "labels": torch.tensor([1, 1, 1]),
              "image_id": 7}
    prediction = {"boxes": boxes([0, 0, 10, 10], [80, 80, 200, 200]), "labels": torch.tensor([1, 1]),
                  "scores": torch.tensor([0.9, 0.8])}
    ground_truth = coco_ground_truth([target], SIZE, ["cat"])
    results = coco_results([prediction], [7])
    metrics = coco_metrics(ground_truth, results)
    assert list(metrics)[:12] == list(COCO_SUMMARY)
    hand = {"mAP_small": 1.0, "mAP_medium": 0.0, "mAP_large": 1.0, "mAR_small": 1.0, "mAR_medium": 0.0,
            "mAR_large": 1.0, "mAR1": 1 / 3, "mAR10": 2 / 3, "mAR100": 2 / 3}  # one detection allowed: 1 of 3 found
    assert {name: metrics[name] for name in hand} == pytest.approx(hand)

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert [metrics[name] for name in COCO_SUMMARY] == pytest.approx([max(0.0, v) for v in evaluator.stats])


def test_the_ground_truth_keeps_the_files_area_not_the_boxs():
    # A 40x40 box (1600 px: medium) around a polygon of 900 px (small, as the annotation file says).
    target = {"boxes": boxes([10, 10, 50, 50]), "labels": torch.tensor([1]), "image_id": 1,
              "area": torch.tensor([900.0])}
    prediction = {"boxes": boxes([10, 10, 50, 50]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9])}
    with_area = coco_ground_truth([target], SIZE, ["cat"])
    assert with_area["annotations"][0]["area"] == 900.0
    metrics = coco_metrics(with_area, coco_results([prediction], [1]))
    assert (metrics["mAP_small"], metrics["mAP_medium"]) == (pytest.approx(1.0), 0.0)

    unknown = coco_ground_truth([{**target, "area": torch.tensor([float("nan")])}], SIZE, ["cat"])
    assert unknown["annotations"][0]["area"] == 1600.0  # no area in the file: the box's
    metrics = coco_metrics(unknown, coco_results([prediction], [1]))
    assert (metrics["mAP_small"], metrics["mAP_medium"]) == (0.0, pytest.approx(1.0))


def test_detection_monitors_every_evaluated_number_for_boxes_and_masks():
    names = Detection().evaluated_metrics({"arch": "mask_rcnn"})
    for name in COCO_SUMMARY:
        assert f"val/{name}" in names and f"val/mask_{name}" in names
    assert {"val/mAP", "val/mAP50", "val/mAR100", "val/precision", "val/F1"} <= set(names)  # the names runs used


def test_evaluation_files_name_their_images():
    # VOC's image ids are file stems: the ground truth's ids are integers, and each image keeps its name beside it.
    targets = [{"boxes": boxes([1, 1, 9, 9]), "labels": torch.tensor([1]), "image_id": 0, "file_name": "2008_01.jpg"},
               {"boxes": boxes(), "labels": torch.tensor([], dtype=torch.int64), "image_id": 1,
                "file_name": "2008_02.jpg"}]
    ground_truth = coco_ground_truth(targets, SIZE * 2, ["cat"])
    assert [(image["id"], image["file_name"]) for image in ground_truth["images"]] == [(0, "2008_01.jpg"),
                                                                                      (1, "2008_02.jpg")]
    prediction = {"boxes": boxes([1, 1, 9, 9]), "labels": torch.tensor([1]), "scores": torch.tensor([0.9])}
    results = with_file_names(coco_results([prediction, prediction], [0, 1]), ground_truth)
    assert [(r["image_id"], r["file_name"]) for r in results] == [(0, "2008_01.jpg"), (1, "2008_02.jpg")]

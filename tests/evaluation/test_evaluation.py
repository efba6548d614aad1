"""COCO conversion, COCOeval metrics, matching, precision/recall/F1 and the confusion matrix on hand-made data."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from losslab.evaluation.metrics import (
    coco_ground_truth,
    coco_image_ids,
    coco_metrics,
    coco_results,
    confusion_matrix,
    match_detections,
    precision_recall_f1,
)

CLASSES = ["cat", "dog"]
H, W = 32, 40
SIZES = [(H, W)] * 3


def _masks(boxes: list[list[float]]) -> torch.Tensor:
    """Box-shaped uint8 masks [N, H, W]."""
    masks = torch.zeros(len(boxes), H, W, dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, int(y1):int(y2), int(x1):int(x2)] = 1
    return masks


def _target(boxes: list[list[float]], labels: list[int], image_id: int) -> dict:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "masks": _masks(boxes), "image_id": image_id}


def _prediction(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "scores": torch.tensor(scores, dtype=torch.float32),
            "masks": _masks(boxes).float().unsqueeze(1) * 0.9}


def _targets() -> list[dict]:
    # 3 images, 2 classes, the last image without objects.
    return [_target([[2, 3, 12, 15], [20, 5, 35, 25]], [1, 2], 1),
            _target([[5, 5, 25, 30]], [2], 2),
            _target([], [], 3)]


def _perfect(targets: list[dict]) -> list[dict]:
    return [_prediction(t["boxes"].tolist(), t["labels"].tolist(), [1.0] * len(t["labels"])) for t in targets]


def _ids(targets: list[dict]) -> list[int]:
    return [t["image_id"] for t in targets]


def test_perfect_predictions(capsys):
    targets = _targets()
    predictions = _perfect(targets)
    gt = coco_ground_truth(targets, SIZES, CLASSES, with_masks=True)
    boxes = coco_metrics(gt, coco_results(predictions, _ids(targets)), "bbox")
    assert boxes["mAP"] == pytest.approx(1.0) and boxes["mAP50"] == pytest.approx(1.0)
    assert boxes["AP/cat"] == pytest.approx(1.0) and boxes["AP/dog"] == pytest.approx(1.0)
    masks = coco_metrics(gt, coco_results(predictions, _ids(targets), with_masks=True), "segm", prefix="mask_")
    assert masks["mask_mAP"] == pytest.approx(1.0) and masks["mask_mAP50"] == pytest.approx(1.0)
    assert capsys.readouterr().out == ""  # COCOeval's progress output is silenced

    matrix = confusion_matrix(predictions, targets, num_classes=2, score_threshold=0.5)
    assert matrix.dtype == np.int64 and matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix, np.diag([0, 1, 2]))
    assert precision_recall_f1(predictions, targets, score_threshold=0.5) == {"precision": 1.0, "recall": 1.0,
                                                                               "F1": 1.0}


def test_no_predictions_give_zero():
    targets = _targets()
    gt = coco_ground_truth(targets, SIZES, CLASSES)
    empty = [_prediction([], [], []) for _ in targets]
    results = coco_results(empty, _ids(targets))
    assert results == []
    metrics = coco_metrics(gt, results, with_pr=True)
    assert metrics["mAP"] == 0.0 and metrics["mAP50"] == 0.0 and metrics["mAR100"] == 0.0
    assert metrics["AP/cat"] == 0.0 and metrics["AP/dog"] == 0.0
    assert set(metrics["pr"]) == {"cat", "dog"}
    assert precision_recall_f1(empty, targets, 0.5) == {"precision": 0.0, "recall": 0.0, "F1": 0.0}


def test_class_without_predictions_gets_zero_ap():
    targets = _targets()
    # Only the dog detections are predicted, perfectly.
    predictions = [_prediction([b.tolist() for b, lab in zip(t["boxes"], t["labels"], strict=True) if lab == 2],
                               [2] * int((t["labels"] == 2).sum()), [1.0] * int((t["labels"] == 2).sum()))
                   for t in targets]
    gt = coco_ground_truth(targets, SIZES, CLASSES)
    metrics = coco_metrics(gt, coco_results(predictions, _ids(targets)), with_pr=True)
    assert metrics["AP/cat"] == 0.0
    assert metrics["AP/dog"] == pytest.approx(1.0)
    assert metrics["mAP"] == pytest.approx(0.5)
    recall, precision = metrics["pr"]["dog"]
    assert len(recall) == len(precision) == 101 and precision[0] == pytest.approx(1.0)
    assert all(p == 0.0 for p in metrics["pr"]["cat"][1])


def test_class_without_ground_truth_is_left_out():
    targets = [_target([[2, 3, 12, 15]], [1], 1)]
    predictions = [_prediction([[2, 3, 12, 15], [20, 5, 35, 25]], [1, 2], [0.9, 0.8])]
    metrics = coco_metrics(coco_ground_truth(targets, [(H, W)], CLASSES), coco_results(predictions, [1]))
    assert metrics["AP/cat"] == pytest.approx(1.0)
    assert "AP/dog" not in metrics


def test_map_matches_independent_cocoeval(tmp_path):
    targets = _targets()
    # Shifted boxes, a false positive, a wrong class and a low-score detection.
    predictions = [_prediction([[3, 4, 13, 16], [20, 5, 35, 25], [0, 0, 8, 8]], [1, 2, 1], [0.9, 0.6, 0.7]),
                   _prediction([[8, 9, 26, 30], [5, 5, 25, 30]], [2, 1], [0.8, 0.3]),
                   _prediction([[1, 1, 10, 10]], [2], [0.1])]
    gt = coco_ground_truth(targets, SIZES, CLASSES)
    results = coco_results(predictions, _ids(targets))
    metrics = coco_metrics(gt, results)

    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(json.loads(json.dumps(gt))))
    res_path.write_text(json.dumps(json.loads(json.dumps(results))))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(res_path))
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert 0.0 < metrics["mAP"] < 1.0
    assert metrics["mAP"] == pytest.approx(evaluator.stats[0])
    assert metrics["mAP50"] == pytest.approx(evaluator.stats[1])
    assert metrics["mAP75"] == pytest.approx(evaluator.stats[2])
    assert metrics["mAR100"] == pytest.approx(evaluator.stats[8])


def test_precision_recall_f1_hand_checked():
    target = _target([[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30]], [1, 2, 1], 1)
    prediction = _prediction([[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30], [0, 20, 10, 30]],
                             [1, 2, 2, 1], [0.9, 0.8, 0.7, 0.2])
    # Above 0.5: two correct, one wrong class (it takes the third gt box); the correct one at 0.2 is cut.
    metrics = precision_recall_f1([prediction], [target], score_threshold=0.5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["F1"] == pytest.approx(2 / 3)


def test_match_detections_greedy_by_score():
    target = _target([[0, 0, 10, 10], [30, 30, 39, 31]], [1, 1], 1)
    # The higher-scored prediction overlaps less but is matched first; the other then finds no free box.
    prediction = _prediction([[0, 0, 10, 10], [0, 0, 10, 8], [20, 20, 25, 25], [0, 0, 10, 10]],
                             [1, 1, 1, 1], [0.5, 0.9, 0.8, 0.1])
    matched, unmatched_pred, unmatched_gt = match_detections(prediction, target, score_threshold=0.3)
    assert matched == [(1, 0)]
    assert unmatched_pred == [2, 0]
    assert unmatched_gt == [1]


def test_confusion_matrix_hand_made():
    targets = [_target([[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30]], [1, 2, 2], 1),
               _target([[5, 5, 15, 15]], [1], 2)]
    predictions = [_prediction([[0, 0, 10, 10], [20, 0, 30, 10], [25, 25, 35, 35]], [1, 1, 2], [0.9, 0.8, 0.7]),
                   _prediction([[5, 5, 15, 15]], [1], [0.2])]  # below the threshold: a miss
    matrix = confusion_matrix(predictions, targets, num_classes=2, score_threshold=0.5)
    expected = np.array([[0, 0, 1],   # background: a false-positive dog
                         [1, 1, 0],   # cat: one correct, one missed
                         [1, 1, 0]])  # dog: one taken for a cat, one missed
    np.testing.assert_array_equal(matrix, expected)


def test_coco_dicts_are_json_and_xywh():
    targets = _targets()
    gt = coco_ground_truth(targets, SIZES, CLASSES, with_masks=True)
    json.dumps(gt)
    assert [img["id"] for img in gt["images"]] == [1, 2, 3]  # the image without objects is still listed
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3]
    first = gt["annotations"][0]
    assert first["bbox"] == [2.0, 3.0, 10.0, 12.0]
    assert first["area"] == 120.0 and first["iscrowd"] == 0 and first["category_id"] == 1
    assert isinstance(first["segmentation"]["counts"], str)
    assert gt["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert coco_ground_truth(targets, SIZES, CLASSES)["annotations"][0]["area"] == 120.0

    results = coco_results(_perfect(targets), _ids(targets), with_masks=True)
    json.dumps(results)
    assert len(results) == 3
    assert results[0] == {"image_id": 1, "category_id": 1, "bbox": [2.0, 3.0, 10.0, 12.0], "score": 1.0,
                          "segmentation": results[0]["segmentation"]}
    assert all(type(v) is float for v in results[0]["bbox"])
    assert isinstance(results[0]["segmentation"]["counts"], str)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_gives_pycocotools_numbers(iou_type):
    """eval.backend=faster_coco_eval computes the same metrics as pycocotools on the same ground truth and results
    (boxes and masks, several classes, crowd-free, detections of every quality)."""

    generator = torch.Generator().manual_seed(7)
    targets, predictions = [], []
    for index in range(12):
        corners = torch.rand(4, 2, generator=generator) * 40
        boxes = torch.cat([corners, corners + torch.rand(4, 2, generator=generator) * 20 + 4], dim=1)
        labels = torch.randint(1, 4, (4,), generator=generator)
        masks = torch.zeros(4, 64, 64, dtype=torch.uint8)
        for k, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
            masks[k, y0:y1, x0:x1] = 1
        targets.append({"boxes": boxes, "labels": labels, "masks": masks, "image_id": index})
        jitter = torch.randn(6, 4, generator=generator) * 1.5
        predicted = (boxes.repeat(2, 1)[:6] + jitter).clamp(0, 64)
        predicted[:, 2:] = torch.maximum(predicted[:, 2:], predicted[:, :2] + 1)
        probs = torch.zeros(6, 1, 64, 64)
        for k, (x0, y0, x1, y1) in enumerate(predicted.round().int().tolist()):
            probs[k, 0, y0:y1, x0:x1] = 0.9
        predictions.append({"boxes": predicted, "scores": torch.rand(6, generator=generator),
                            "labels": labels.repeat(2)[:6], "masks": probs})
    ground_truth = coco_ground_truth(targets, [(64, 64)] * 12, ("a", "b", "c"), with_masks=True)
    results = coco_results(predictions, coco_image_ids(targets), with_masks=True)
    reference = coco_metrics(ground_truth, results, iou_type, with_pr=True)
    faster = coco_metrics(ground_truth, results, iou_type, with_pr=True, backend="faster_coco_eval")
    assert 0.05 < reference["mAP"] < 0.95
    faster_pr, reference_pr = faster.pop("pr"), reference.pop("pr")
    assert faster_pr.keys() == reference_pr.keys()
    for name, (recall, precision) in reference_pr.items():
        assert faster_pr[name][0] == pytest.approx(recall) and faster_pr[name][1] == pytest.approx(precision)
    assert faster == pytest.approx(reference, abs=1e-12)

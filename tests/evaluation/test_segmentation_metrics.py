"""mIoU, mDice, pixel accuracy and per-class IoU from a confusion matrix, against hand-computed matrices."""

from __future__ import annotations

import math

import pytest
import torch

from losslab.evaluation.segmentation_metrics import confusion_matrix, scores

CLASSES = ("background", "car", "road")


def test_confusion_matrix_counts_true_class_by_predicted_class_and_skips_ignored_pixels():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    predicted = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    assert confusion_matrix(predicted, target, 3).tolist() == [[2, 1, 0],   # background: 2 right, 1 as car
                                                               [0, 2, 0],   # car: both right
                                                               [1, 0, 1]]   # road: 1 as background, 1 right


def test_scores_by_hand():
    matrix = torch.tensor([[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    found = scores(matrix, CLASSES)
    # IoU = TP / (TP + FP + FN): background 2 / (2 + 1 + 1), car 2 / (2 + 1 + 0), road 1 / (1 + 0 + 1)
    assert found["IoU/background"] == pytest.approx(0.5)
    assert found["IoU/car"] == pytest.approx(2 / 3)
    assert found["IoU/road"] == pytest.approx(0.5)
    assert found["mIoU"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    # Dice = 2 TP / (2 TP + FP + FN): 4/6, 4/5, 2/3
    assert found["mDice"] == pytest.approx((4 / 6 + 4 / 5 + 2 / 3) / 3)
    assert found["pixel_accuracy"] == pytest.approx(5 / 7)


def test_a_class_in_neither_targets_nor_predictions_has_no_iou_and_stays_out_of_the_mean():
    matrix = torch.tensor([[3, 1, 0], [1, 1, 0], [0, 0, 0]])
    found = scores(matrix, CLASSES)
    assert math.isnan(found["IoU/road"])
    assert found["mIoU"] == pytest.approx((3 / 5 + 1 / 3) / 2)
    predicted_only = torch.tensor([[3, 0, 1], [0, 2, 0], [0, 0, 0]])  # road predicted, never true: IoU 0, counted
    assert scores(predicted_only, CLASSES)["IoU/road"] == 0.0
    assert scores(predicted_only, CLASSES)["mIoU"] == pytest.approx((3 / 4 + 1 + 0) / 3)

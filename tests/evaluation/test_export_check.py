"""The export check's matching: detections paired one to one by IoU, whatever order they come in, with the true
worst differences reported and the kept detections without a counterpart counted."""

from __future__ import annotations

import pytest
import torch

from losslab.errors import LosslabError
from losslab.evaluation import export_check
from losslab.evaluation.export_check import (
    BOX_TOLERANCE,
    SCORE_TOLERANCE,
    Differences,
    compare_detections,
    detection_sample_sizes,
)

IMAGE = torch.zeros(3, 600, 800)
TOLERANCE = Differences(BOX_TOLERANCE, SCORE_TOLERANCE)
# A RetinaNet-like output: two detections of one label with nearly tied scores side by side (what pairing by score
# once mixed up: "boxes by up to 20.2 px" for a correct file), others kept, and a tail below the threshold.
FOUND = {
    "boxes": torch.tensor([[100.0, 100.0, 180.0, 160.0], [120.0, 100.0, 200.0, 160.0], [10.0, 10.0, 50.0, 50.0],
                           [300.0, 200.0, 400.0, 330.0], [0.0, 0.0, 30.0, 0.0], [500.0, 50.0, 520.0, 90.0]]),
    "labels": torch.tensor([1, 1, 2, 3, 2, 1]),
    "scores": torch.tensor([0.81, 0.80999, 0.7, 0.55, 0.52, 0.01]),
}


@pytest.fixture(autouse=True)
def compared_by_the_threshold(monkeypatch):
    """FOUND has fewer detections than each image's best always compared: compare only the 2 best beside those
    reaching the threshold, so that the threshold decides."""
    monkeypatch.setattr(export_check, "ALWAYS_COMPARED", 2)


def check(found: dict, scale: float = 1.0) -> Differences:
    return compare_detections([IMAGE], [FOUND], [found], TOLERANCE, 0.5, [scale])


def reordered(order: list[int], boxes: torch.Tensor | None = None, scores: torch.Tensor | None = None) -> dict:
    """FOUND with `boxes` and `scores` in place of its own, listed in `order`."""
    changed = {**FOUND, "boxes": FOUND["boxes"] if boxes is None else boxes,
               "scores": FOUND["scores"] if scores is None else scores}
    return {name: value[order] for name, value in changed.items()}


def test_a_faithful_export_is_accepted_whatever_the_order_of_its_detections_and_its_float32_noise():
    generator = torch.Generator().manual_seed(0)
    box_noise = (torch.rand(6, 4, generator=generator) - 0.5) * 2e-3
    score_noise = (torch.rand(6, generator=generator) - 0.5) * 2e-6
    # The nearly tied pair swaps places; the tail detection is listed first.
    order = [5, 1, 0, 3, 2, 4]
    found = reordered(order, FOUND["boxes"] + box_noise, FOUND["scores"] + score_noise)
    agreement = check(found, scale=0.5)
    kept = FOUND["scores"] >= 0.5  # the 0.01 one is below the threshold on both sides: not compared
    assert (agreement.detections, agreement.unmatched) == (5, 0)
    box_moved = ((FOUND["boxes"] + box_noise).double() - FOUND["boxes"].double()).abs()  # as float32 holds them
    score_moved = ((FOUND["scores"] + score_noise).double() - FOUND["scores"].double()).abs()
    assert agreement.box == float(box_moved[kept].max()) * 0.5 > 0
    assert agreement.score == float(score_moved[kept].max()) > 0


def test_a_shifted_box_is_refused_with_the_true_worst_difference():
    boxes = FOUND["boxes"].clone()
    boxes[3] += torch.tensor([3.0, 0.0, 3.0, 0.0])  # 3 px right, IoU 0.94: still its pair, 3 px apart
    with pytest.raises(LosslabError, match=r"boxes by up to 3 px of the model's input \(tolerance 0.025, "
                                           r"--tolerance\), scores by up to 0 .* over 5 matched pair\(s\); the largest "
                                           r"box difference is on sample image 600x800 \(height x width\), at label 3, "
                                           r"score 0.55, box \[300.0, 200.0, 400.0, 330.0\]"):
        check(reordered([2, 0, 1, 3, 4, 5], boxes))


def test_kept_detections_without_a_counterpart_are_counted_and_named():
    boxes = FOUND["boxes"].clone()
    boxes[2] += 30.0  # moved off its place: no overlap with the PyTorch model's box
    with pytest.raises(LosslabError, match=r"boxes by up to 0 .* over 4 matched pair\(s\).*; 2 kept detection\(s\) "
                                           r"without a counterpart \(the same label, IoU 0.5 or more\), the first on "
                                           r"sample image 600x800 \(height x width\): the exported model lacks a "
                                           r"detection that the PyTorch model has: label 2, score 0.7, box "
                                           r"\[10.0, 10.0, 50.0, 50.0\]"):
        check(reordered(list(range(6)), boxes))
    # Far below the threshold detections may come and go (the 0.01 one is left out); one kept on one side only
    # still pairs, and its true score difference refuses the file.
    scores = FOUND["scores"].clone()
    scores[4] = 0.49999
    with pytest.raises(LosslabError, match=r"scores by up to 0.02 \(tolerance 0.003, --score-tolerance\) over 5 "
                                           r"matched pair\(s\); the largest box difference is on sample image 600x800"):
        check(reordered([0, 1, 2, 3, 4], scores=scores))


def test_a_box_clipped_to_no_area_still_pairs_with_its_counterpart():
    boxes = FOUND["boxes"].clone()
    boxes[4] += 1e-4  # the zero-height box at the image's edge, moved by float32 noise
    assert check(reordered(list(range(6)), boxes)).unmatched == 0


def test_the_detector_is_checked_on_its_square_and_on_sizes_that_round_apart():
    sizes = detection_sample_sizes(128, 128, 5)
    assert sizes[0] == (128, 128) and len(set(sizes)) == 6

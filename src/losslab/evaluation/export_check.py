"""Whether an exported model reproduces the PyTorch model: its sample images, and the comparison of their outputs.

Detections are matched one to one, same label, by IoU (the assignment of largest total IoU, scipy's
linear_sum_assignment over torchvision's box_iou), so that detections listed in another order, or with nearly equal
scores swapped, are still compared with their own counterpart. Compared is what a user keeps: pairs where either side
scores at least the threshold. The verdict reports the true worst box and score differences over those pairs and the
kept detections that have no counterpart; any of these beyond its tolerance refuses the export.

The default tolerances are about ten times the largest float32 noise measured between onnxruntime and PyTorch
(TorchScript is exact: 0 and 0), over the swept sizes (`python scripts/check_export.py --sizes 60 --formats onnx`,
docs/commands.md): 6.2e-4 px of the model's input and 5.5e-6 in score on the test models (64 px, untrained),
1.4e-3 px and 4.4e-5 on the default run's trained Faster R-CNN (128 px, `--run`), and on real VOC photos (issue 30)
up to 2.4e-3 px and 3.4e-4 (RetinaNet). An inexact resize moved boxes by 5-69 px and scores by up to 0.097.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_iou

from losslab.errors import LosslabError
from losslab.modeling.resize import sizes_rounding_apart

BOX_TOLERANCE = 0.025  # pixels of the model's input (the resized image)
SCORE_TOLERANCE = 3e-3
PROBABILITY_TOLERANCE = 1e-4  # segmentation: a class probability of a pixel
ALWAYS_COMPARED = 10  # each sample image's best detections are compared even below the score threshold
MIN_IOU = 0.5  # a pair overlaps at least this much; a box moved further has no counterpart
SWEPT_SIZES = 12  # sample images of sizes whose resize rounds apart in float32, besides the min_size square

Detections = dict[str, Tensor]


def detection_sample_sizes(min_size: int, max_size: int, count: int = SWEPT_SIZES) -> list[tuple[int, int]]:
    """(height, width) of the detector check's images: the model's min_size square, which it takes as it is, then
    `count` sizes (photos it shrinks and ones it enlarges, of every aspect) where a resize scale computed in float32
    gives another output size than eager PyTorch's float64: the sizes an inexact export gets wrong."""
    return [(min_size, min_size), *sizes_rounding_apart(min_size, max_size, count)]


def sample_images(sizes: list[tuple[int, int]]) -> list[Tensor]:
    """Fixed random RGB images in [0, 1], one of each (height, width)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, height, width, generator=generator) for height, width in sizes]


@dataclass
class Differences:
    """Largest box and score differences between an exported and the PyTorch model over the matched pairs compared
    (or, as a tolerance, the largest allowed), with the kept detections that had no counterpart."""

    box: float = 0.0  # pixels of the model's input
    score: float = 0.0
    detections: int = 0  # pairs compared
    unmatched: int = 0  # kept detections, on either side, without a counterpart
    where: str = ""  # the sample image and detection with the largest box difference
    first_unmatched: str = ""  # the sample image and the first detection without a counterpart

    def add(self, other: Differences) -> Differences:
        worst = other if other.box > self.box or not self.where else self
        return Differences(worst.box, max(self.score, other.score), self.detections + other.detections,
                           self.unmatched + other.unmatched, worst.where, self.first_unmatched or other.first_unmatched)


def compare_detections(samples: list[Tensor], expected: list[Detections], actual: list[Detections],
                       tolerance: Differences, threshold: float, scales: list[float]) -> Differences:
    """How closely the exported model's detections (`actual`) match the PyTorch model's (`expected`) on each sample
    image; LosslabError when a kept detection has no counterpart or a pair differs beyond `tolerance`.

    Kept are the detections scoring at least `threshold` (and at least each image's ALWAYS_COMPARED best, so that the
    check is never empty). Far below the cut detections may come and go (onnxruntime once left out one scoring 1.2e-8):
    a kept detection is matched among all of the other side's, so that one scoring just above the cut on one side
    and just below it on the other is still paired. `scales` turn each image's pixels into the model's input pixels,
    in which box differences are measured.
    """
    agreement = Differences()
    for image, wanted, found, scale in zip(samples, expected, actual, scales, strict=True):
        best = wanted["scores"].sort(descending=True).values[:ALWAYS_COMPARED]
        cut = min(threshold, float(best[-1])) if len(best) else threshold
        where = f"{image.shape[-2]}x{image.shape[-1]} (height x width)"
        agreement = agreement.add(compare_image(wanted, found, cut, scale, where))
    if agreement.unmatched or agreement.box > tolerance.box or agreement.score > tolerance.score:
        unmatched = (f"; {agreement.unmatched} kept detection(s) without a counterpart (the same label, IoU "
                     f"{MIN_IOU:g} or more), the first on sample image {agreement.first_unmatched}"
                     if agreement.unmatched else "")
        raise LosslabError(f"the exported model differs from the PyTorch model on sample images: boxes by up to "
                           f"{agreement.box:.3g} px of the model's input (tolerance {tolerance.box:g}, --tolerance), "
                           f"scores by up to {agreement.score:.3g} (tolerance {tolerance.score:g}, --score-tolerance) "
                           f"over {agreement.detections} matched pair(s); the largest box difference is on sample "
                           f"image {agreement.where or '-'}{unmatched}. The export is not faithful.")
    return agreement


def compare_image(wanted: Detections, found: Detections, cut: float, scale: float, where: str) -> Differences:
    """The differences of one image's detections: pairs where either side scores at least `cut`, and the
    detections scoring at least `cut` left without a pair."""
    rows, columns = matched_pairs(wanted, found)
    kept = (wanted["scores"][rows] >= cut) | (found["scores"][columns] >= cut)
    rows, columns = rows[kept], columns[kept]
    boxes = (wanted["boxes"][rows].double() - found["boxes"][columns].double()).abs().amax(-1) * scale
    scores = (wanted["scores"][rows].double() - found["scores"][columns].double()).abs()
    lacking = unpaired(wanted, rows, cut)
    extra = unpaired(found, columns, cut)
    first = (f"{where}: the exported model lacks a detection that the PyTorch model has: "
             f"{described(wanted, lacking[0])}" if lacking else
             f"{where}: the exported model has a detection that the PyTorch model lacks: "
             f"{described(found, extra[0])}" if extra else "")
    if not len(rows):
        return Differences(unmatched=len(lacking) + len(extra), first_unmatched=first)
    worst = int(boxes.argmax())
    return Differences(float(boxes[worst]), float(scores.max()), len(rows), len(lacking) + len(extra),
                       f"{where}, at {described(wanted, int(rows[worst]))}", first)


def matched_pairs(wanted: Detections, found: Detections) -> tuple[Tensor, Tensor]:
    """Indices (into `wanted`, into `found`) of the one-to-one pairs of the same label with the largest total IoU,
    each pair overlapping by at least MIN_IOU. (IoU of the boxes grown by half a pixel on every side: a box clipped
    to the image edge can have no area, and its counterpart must still overlap it.)"""
    if not len(wanted["boxes"]) or not len(found["boxes"]):
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    grown = torch.tensor([-0.5, -0.5, 0.5, 0.5], dtype=torch.float64)
    iou = box_iou(wanted["boxes"].double() + grown, found["boxes"].double() + grown)
    iou[wanted["labels"][:, None] != found["labels"][None].to(wanted["labels"].dtype)] = 0.0
    rows, columns = (torch.as_tensor(i, dtype=torch.long) for i in linear_sum_assignment(iou.numpy(), maximize=True))
    overlapping = iou[rows, columns] >= MIN_IOU
    return rows[overlapping], columns[overlapping]


def unpaired(detections: Detections, paired: Tensor, cut: float) -> list[int]:
    """The detections scoring at least `cut` that are not among `paired`, by index."""
    alone = detections["scores"] >= cut
    alone[paired] = False
    return alone.nonzero().flatten().tolist()


def described(detections: Detections, index: int) -> str:
    box = [round(v, 1) for v in detections["boxes"][index].tolist()]
    return f"label {int(detections['labels'][index])}, score {float(detections['scores'][index]):.4g}, box {box}"


# ------------------------------------------------------------------------------------------------ segmentation


@dataclass
class MaskDifferences:
    """How an exported segmenter's output differs from the PyTorch model's over the sample images."""

    probability: float = 0.0  # the largest difference of a class probability
    pixels_differing: int = 0  # pixels given another class (only where the two best classes nearly tie)
    pixels: int = 0  # pixels compared


def segmentation_sample_sizes(min_size: int) -> list[tuple[int, int]]:
    """Square, landscape and portrait, of sides that resize exactly in float32 too. (The segmenter's export resizes
    sizes that round apart exactly as well: tests/commands/test_export.py.)"""
    return [(min_size, min_size), (min_size, min_size * 3 // 2), (min_size * 3 // 2, min_size)]


def compare_masks(expected: list[dict[str, Tensor]], actual: list[dict[str, Tensor]],
                  tolerance: float) -> MaskDifferences:
    """The exported model's masks and probabilities against the PyTorch model's; LosslabError when a probability
    differs by more than `tolerance`, or a pixel's class differs where the two best classes do not tie within it."""
    agreement = MaskDifferences()
    for index, (wanted, found) in enumerate(zip(expected, actual, strict=True)):
        if found["probabilities"].shape != wanted["probabilities"].shape:
            raise LosslabError(f"the exported model's output for sample image {index} is "
                               f"{list(found['probabilities'].shape)}, the PyTorch model's "
                               f"{list(wanted['probabilities'].shape)}; the export is not faithful.")
        difference = float((found["probabilities"].float() - wanted["probabilities"]).abs().max())
        top_two = wanted["probabilities"].topk(min(2, wanted["probabilities"].shape[0]), dim=0).values
        near_tie = (top_two[0] - top_two[-1]) <= 2 * tolerance
        differing = found["mask"].long() != wanted["mask"]
        if difference > tolerance or (differing & ~near_tie).any():
            raise LosslabError(f"the exported model differs from the PyTorch model on sample image {index}: "
                               f"probabilities by up to {difference:.3g} (tolerance {tolerance:g}), "
                               f"{int(differing.sum())} pixels of another class; the export is not faithful.")
        agreement = MaskDifferences(max(agreement.probability, difference),
                                    agreement.pixels_differing + int(differing.sum()),
                                    agreement.pixels + differing.numel())
    return agreement

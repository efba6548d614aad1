"""Per-epoch evaluation cost on large validation sets, without a model: made-up ground truth and detections.

    python scripts/bench_evaluation.py [--images 500 5000] [--repeats 3] [--masks]

For each size it times, in interleaved repetitions, `score_detections` (what every evaluated epoch and
`losslab evaluate` run) with each COCO backend (eval.backend=pycocotools | faster_coco_eval), and its parts:
building the COCO dicts, COCOeval itself, and precision/recall/F1 matching. Prints medians and the ratio of the
backends; the numbers they give are compared too (they must agree).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from losslab.evaluation import metrics

CLASSES = ("circle", "square", "triangle")


def made_up(images: int, seed: int = 0, size: int = 256, objects: int = 6, detections: int = 50):
    """Targets with `objects` boxes per image and predictions near them (plus noise boxes), with scores."""
    generator = torch.Generator().manual_seed(seed)
    targets, predictions = [], []
    for index in range(images):
        corners = torch.rand(objects, 2, generator=generator) * (size * 0.7)
        sides = torch.rand(objects, 2, generator=generator) * (size * 0.25) + 8
        boxes = torch.cat([corners, corners + sides], dim=1)
        labels = torch.randint(1, len(CLASSES) + 1, (objects,), generator=generator)
        targets.append({"boxes": boxes, "labels": labels, "image_id": index})
        near = boxes.repeat(detections // objects + 1, 1)[:detections]
        jitter = torch.randn(detections, 4, generator=generator) * 6
        predicted = (near + jitter).clamp(0, size)
        predicted[:, 2:] = torch.maximum(predicted[:, 2:], predicted[:, :2] + 1)
        predictions.append({"boxes": predicted, "scores": torch.rand(detections, generator=generator),
                            "labels": torch.randint(1, len(CLASSES) + 1, (detections,), generator=generator)})
    return predictions, targets, [(size, size)] * images


def timed(work):
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def measure(images: int, repeats: int) -> tuple[dict[str, float], float]:
    """Median seconds of each part for `images` made-up images, and the largest difference between the backends."""
    predictions, targets, sizes = made_up(images)
    samples: dict[str, list[float]] = {}
    found = {}
    for _ in range(repeats):
        for backend in metrics.BACKENDS:
            seconds, (scores, _, _) = timed(lambda b=backend: metrics.score_detections(
                predictions, targets, sizes, CLASSES, 0.5, backend=b))
            samples.setdefault(backend, []).append(seconds)
            found[backend] = scores
        ground_truth = metrics.coco_ground_truth(targets, sizes, CLASSES)
        results = metrics.coco_results(predictions, metrics.coco_image_ids(targets))
        samples.setdefault("building COCO dicts", []).append(timed(lambda: (
            metrics.coco_ground_truth(targets, sizes, CLASSES),
            metrics.coco_results(predictions, metrics.coco_image_ids(targets))))[0])
        for backend in metrics.BACKENDS:
            samples.setdefault(f"COCOeval ({backend})", []).append(timed(
                lambda b=backend, g=ground_truth, r=results: metrics.coco_metrics(g, r, "bbox", backend=b))[0])
        samples.setdefault("precision/recall/F1", []).append(timed(
            lambda: metrics.precision_recall_f1(predictions, targets, 0.5))[0])
    difference = max(abs(found["pycocotools"][k] - found["faster_coco_eval"][k]) for k in found["pycocotools"])
    return {name: statistics.median(values) for name, values in samples.items()}, difference


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for images in args.images:
        medians, difference = measure(images, args.repeats)
        print(f"{images} images, 50 detections and 6 objects each (medians of {args.repeats}):")
        for name, seconds in medians.items():
            print(f"  {name:32} {seconds:8.2f} s")
        print(f"  pycocotools / faster_coco_eval: {medians['pycocotools'] / medians['faster_coco_eval']:.2f}x "
              f"(whole evaluation), largest metric difference {difference:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

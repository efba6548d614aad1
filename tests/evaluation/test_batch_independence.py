"""Inference does not depend on how images are batched: the same weights on images of mixed orientation give the same
detections, mAP, class masks and validation loss with batch sizes 1, 2 and 4 (issue 30, item 1).

With model.min_size = max_size = 64 the images below keep their sizes; alone, each is padded to its own size rounded
up to 32 (64x32, 32x64, 64x64), while a batch pads all of them to 64x64: a batched forward would see other pixels
beside every portrait and landscape image."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from conftest import tiny_config, tiny_segmentation_config
from losslab import build_model
from losslab.data.loaders import collate
from losslab.data.shapes import ShapesDataset
from losslab.evaluation.inference import predict
from losslab.evaluation.metrics import score_detections
from losslab.evaluation.segmentation_metrics import split_confusion_matrix
from losslab.training.loop import validation_loss

CLASSES = ["circle", "square", "triangle"]
CROPS = [(64, 28), (30, 64), (64, 64), (64, 30), (28, 64), (64, 40), (40, 64)]  # (height, width): mixed orientation


def mixed_images() -> list:
    """The built-in shapes cut to portrait, landscape and square images (their pixels only)."""
    shapes = ShapesDataset(num_images=len(CROPS), image_size=64, min_objects=2, max_objects=3, seed=1)
    return [shapes[index][0][:, :height, :width] for index, (height, width) in enumerate(CROPS)]


def loader(items: list, batch_size: int) -> DataLoader:
    return DataLoader(items, batch_size=batch_size, shuffle=False, collate_fn=collate)


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return build_model(tiny_config(), num_classes=len(CLASSES))


@pytest.fixture(scope="module")
def detection_items(detector):
    """Each image with a ground truth of the model's own 3 best detections (predicted alone), shifted by 1 px: the mAP
    is then well above 0 and moves with any detection that moves."""
    items = []
    for image_id, image in enumerate(mixed_images()):
        (alone,), _, _ = predict(detector, loader([(image, {"image_id": image_id})], 1))
        height, width = image.shape[-2:]
        boxes = torch.minimum(alone["boxes"][:3] + 1, torch.tensor([width, height, width, height]))
        items.append((image, {"boxes": boxes, "labels": alone["labels"][:3], "image_id": image_id}))
    return items


def test_detections_and_map_are_the_same_for_batch_sizes_1_2_and_4(detector, detection_items):
    results = {}
    for batch_size in (1, 2, 4):
        predictions, targets, sizes = predict(detector, loader(detection_items, batch_size))
        metrics = score_detections(predictions, targets, sizes, CLASSES, 0.05)[0]
        results[batch_size] = predictions, metrics
    one_by_one, metrics_alone = results[1]
    assert metrics_alone["mAP"] > 0.15  # the shifted detections match: a moved box would lower it
    assert sum(len(p["boxes"]) for p in one_by_one) > 20
    for batch_size in (2, 4):
        predictions, metrics = results[batch_size]
        for batched, alone in zip(predictions, one_by_one, strict=True):
            assert set(batched) == set(alone)
            for key in alone:
                assert torch.equal(batched[key], alone[key]), (batch_size, key)
        assert metrics == metrics_alone


def test_the_validation_loss_is_the_same_for_batch_sizes_1_2_and_4(detector, detection_items):
    # Faster R-CNN samples anchors and proposals at random in train mode: each image's own seed keeps them.
    losses = {batch_size: validation_loss(detector, loader(detection_items, batch_size), seed=3)
              for batch_size in (1, 2, 4)}
    assert losses[1]["loss"] > 0
    assert losses[2] == pytest.approx(losses[1], rel=1e-6)
    assert losses[4] == pytest.approx(losses[1], rel=1e-6)


def test_segmentation_masks_and_loss_are_the_same_for_batch_sizes_1_2_and_4():
    torch.manual_seed(0)
    segmenter = build_model(tiny_segmentation_config(), num_classes=len(CLASSES) + 1)
    shapes = ShapesDataset(num_images=len(CROPS), image_size=64, min_objects=2, max_objects=3, seed=1)
    items = []
    for index, (image, (height, width)) in enumerate(zip(mixed_images(), CROPS, strict=True)):
        masks, labels = shapes[index][1]["masks"][:, :height, :width], shapes[index][1]["labels"]
        classes = (masks.long() * labels[:, None, None]).amax(dim=0)  # 0 = background
        items.append((image, {"mask": classes, "image_id": index}))
    matrices = {batch_size: split_confusion_matrix(segmenter, loader(items, batch_size), len(CLASSES) + 1)
                for batch_size in (1, 2, 4)}
    losses = {batch_size: validation_loss(segmenter, loader(items, batch_size)) for batch_size in (1, 2, 4)}
    assert matrices[1].sum() == sum(height * width for height, width in CROPS)
    for batch_size in (2, 4):
        assert torch.equal(matrices[batch_size], matrices[1]), batch_size
        assert losses[batch_size] == pytest.approx(losses[1], rel=1e-6)

"""Mask R-CNN's masks placed box by box give exactly the pixels of torchvision's full-size pasting cut at 0.5, and
predictions through detect() and a raised score threshold are those of the plain model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.models.detection.roi_heads import paste_masks_in_image

from conftest import tiny_config
from losslab import build_model
from losslab.evaluation.inference import detect
from losslab.evaluation.masks import mask_rles, paste_masks
from losslab.modeling.heads import scores_at_least, set_score_threshold


def random_detections(seed: int, height: int, width: int, count: int = 12):
    generator = torch.Generator().manual_seed(seed)
    crops = torch.rand(count, 28, 28, generator=generator)
    corners = torch.rand(count, 2, generator=generator) * torch.tensor([width * 1.2, height * 1.2]) - 10
    sizes = torch.rand(count, 2, generator=generator) * torch.tensor([width / 2, height / 2]) + 0.3
    boxes = torch.cat([corners, corners + sizes], dim=1)
    # As a detector gives them: clipped to the image (some along its edges, some under a pixel wide).
    return crops, boxes.clamp(min=0).minimum(torch.tensor([width, height, width, height]))


@pytest.mark.parametrize(("height", "width"), [(60, 80), (37, 91), (128, 128)])
def test_box_by_box_masks_are_torchvisions_pasted_masks_cut_at_one_half(height, width):
    crops, boxes = random_detections(height * width, height, width)
    expected = paste_masks_in_image(crops[:, None], boxes, (height, width))[:, 0] > 0.5
    assert expected.any()
    assert torch.equal(paste_masks(crops, boxes, height, width), expected)
    rles = mask_rles(crops, boxes, height, width)
    decoded = mask_utils.decode(rles).transpose(2, 0, 1).astype(bool)
    assert np.array_equal(decoded, expected.numpy())
    assert all(isinstance(rle["counts"], str) and rle["size"] == [height, width] for rle in rles)


def test_detect_gives_the_models_detections_with_masks_kept_per_box():
    torch.manual_seed(0)
    model = build_model(tiny_config("model=mask_rcnn")).eval()
    images = [torch.rand(3, 70, 90), torch.rand(3, 64, 64)]
    with torch.inference_mode():
        plain = model(images)
        boxed = detect(model, images)
    for full, crops, image in zip(plain, boxed, images, strict=True):
        assert len(full["boxes"]) > 0
        for key in ("boxes", "labels", "scores"):
            assert torch.equal(full[key], crops[key]), key
        masks = paste_masks(crops["mask_crops"], crops["boxes"], *image.shape[-2:])
        assert torch.equal(masks, full["masks"][:, 0] > 0.5)


@pytest.mark.parametrize("arch", ["mask_rcnn", "retinanet"])
def test_a_raised_score_threshold_keeps_exactly_the_detections_above_it(arch):
    torch.manual_seed(1)
    model = build_model(tiny_config(f"model={arch}")).eval()
    set_score_threshold(model, 0.0)  # an untrained RetinaNet scores everything below torchvision's 0.05
    images = [torch.rand(3, 64, 80)]
    with torch.inference_mode():
        everything = detect(model, images)[0]
        threshold = float(everything["scores"].median())
        with scores_at_least(model, threshold):
            kept = detect(model, images)[0]
    wanted = everything["scores"] >= threshold
    assert 0 < int(wanted.sum()) < len(everything["scores"])
    for key in ("boxes", "labels", "scores"):
        assert torch.equal(kept[key], everything[key][wanted]), key
    threshold_after = model.roi_heads.score_thresh if arch == "mask_rcnn" else model.score_thresh
    assert threshold_after == 0.0  # the model's own threshold is back

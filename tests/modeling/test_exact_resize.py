"""ExactResizeTransform: a scripted detector resizes every image to the size eager PyTorch gives it."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from losslab.modeling.resize import ExactResizeTransform, resize_scale

# Photos (height, width) to shrink, with 4:3, odd 3:2 and 16:9 sides, and a narrow portrait to enlarge.
PHOTOS = [(600, 800), (427, 640), (1080, 1920), (300, 100), (333, 777)]
SETTINGS = [(64, 64), (128, 128), (320, 320), (800, 1333)]  # (min_size, max_size)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


@pytest.mark.parametrize(("min_size", "max_size"), SETTINGS)
def test_the_scripted_transform_resizes_as_eager_torchvision_does(min_size, max_size):
    eager = GeneralizedRCNNTransform(min_size, max_size, MEAN, STD).eval()
    scripted = torch.jit.script(ExactResizeTransform(min_size, max_size, MEAN, STD).eval())
    generator = torch.Generator().manual_seed(0)
    for height, width in PHOTOS:
        image = torch.rand(3, height, width, generator=generator)
        expected, actual = eager([image])[0], scripted([image])[0]
        assert actual.image_sizes == expected.image_sizes
        scale = resize_scale(height, width, min_size, max_size)
        assert actual.image_sizes[0] == (int(height * scale), int(width * scale))
        assert torch.equal(actual.tensors, expected.tensors)


def test_scripted_torchvision_resizes_an_800_by_600_photo_to_another_size():
    """Why ExactResizeTransform exists: torchvision's own scripted resize computes its scale in float32."""
    image = torch.rand(3, 600, 800)
    eager = GeneralizedRCNNTransform(128, 128, MEAN, STD).eval()
    scripted = torch.jit.script(GeneralizedRCNNTransform(128, 128, MEAN, STD).eval())
    assert eager([image])[0].image_sizes == [(96, 128)]
    assert scripted([image])[0].image_sizes == [(95, 127)]


def test_the_scripted_transform_resizes_training_targets_as_eager_torchvision_does():
    target = {"boxes": torch.tensor([[10.0, 20.0, 300.0, 400.0]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 600, 800, dtype=torch.uint8)}
    target["masks"][0, 20:400, 10:300] = 1
    image = torch.rand(3, 600, 800)
    eager = GeneralizedRCNNTransform(128, 128, MEAN, STD).train()
    scripted = torch.jit.script(ExactResizeTransform(128, 128, MEAN, STD).train())
    (expected_images, expected), (images, actual) = eager([image], [dict(target)]), scripted([image], [dict(target)])
    assert images.image_sizes == expected_images.image_sizes == [(96, 128)]
    assert torch.equal(actual[0]["boxes"], expected[0]["boxes"])
    assert torch.equal(actual[0]["masks"], expected[0]["masks"])

"""ExactResizeTransform: a scripted or ONNX-exported detector resizes every image to the size eager PyTorch gives
it."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from losslab.modeling.resize import (
    ExactResizeTransform,
    eager_size,
    resize_scale,
    rounds_apart,
    sizes_rounding_apart,
)

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


def test_the_sizes_that_round_apart_are_those_torchvision_resizes_to_another_size_when_scripted():
    """The 660 x 432 VOC photo of the issue, at 128 px: 83 x 127 in float32 where eager PyTorch gives 83 x 128."""
    assert eager_size(432, 660, 128, 128) == (83, 128) and rounds_apart(432, 660, 128, 128)
    assert not rounds_apart(64, 96, 64, 64)  # exactly 2/3: no rounding
    swept = sizes_rounding_apart(64, 64, 20)
    assert len(set(swept)) == 20 and swept == sizes_rounding_apart(64, 64, 20)  # distinct, and the same each time
    assert all(rounds_apart(height, width, 64, 64) for height, width in swept)
    assert {height > width for height, width in swept} == {True, False}  # portraits and landscapes
    scripted = torch.jit.script(GeneralizedRCNNTransform(64, 64, MEAN, STD).eval())
    missed = [size for size in swept
              if scripted([torch.zeros(3, *size)])[0].image_sizes[0] != eager_size(*size, 64, 64)]
    assert len(missed) >= 10  # most of them trip torchvision's own scripted resize


def onnx_resize(transform, sizes: list[tuple[int, int]], tmp_path) -> list[tuple[int, int]]:
    """The (height, width) that `transform`, exported to ONNX, resizes each size to in onnxruntime."""
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (losslab[export])")

    class Resized(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transform = transform

        def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
            return self.transform(images)[0].tensors

    with pytest.warns(Warning):  # tracing warns about data-dependent shapes
        torch.onnx.export(Resized().eval(), ([torch.rand(3, 100, 120)],), str(tmp_path / "resize.onnx"), dynamo=False,
                          opset_version=17, input_names=["image"], dynamic_axes={"image": {1: "height", 2: "width"}})
    session = onnxruntime.InferenceSession(str(tmp_path / "resize.onnx"), providers=["CPUExecutionProvider"])
    return [tuple(session.run(None, {"image": torch.rand(3, *size).numpy()})[0].shape[-2:]) for size in sizes]


@pytest.mark.parametrize(("min_size", "max_size"), [(64, 64), (128, 128), (800, 1333)])
def test_the_onnx_transform_resizes_every_size_as_eager_torchvision_does(min_size, max_size, tmp_path):
    """Sizes found to round apart, and the 660 x 432 VOC photo that onnxruntime resized to 83 x 127 at 128 px."""
    sizes = [(432, 660), *sizes_rounding_apart(min_size, max_size, 30)]
    exact = ExactResizeTransform(min_size, max_size, MEAN, STD, size_divisible=1)
    assert onnx_resize(exact, sizes, tmp_path) == [eager_size(*size, min_size, max_size) for size in sizes]


def test_torchvisions_onnx_transform_resizes_photos_to_another_size(tmp_path):
    """Why the ONNX graph computes the size itself: torchvision's traced resize takes a float32 scale."""
    sizes = [(432, 660), *sizes_rounding_apart(128, 128, 30)]
    stock = GeneralizedRCNNTransform(128, 128, MEAN, STD, size_divisible=1)
    resized = onnx_resize(stock, sizes, tmp_path)
    assert resized[0] == (83, 127) != eager_size(432, 660, 128, 128) == (83, 128)
    assert sum(size != eager_size(*photo, 128, 128) for size, photo in zip(resized, sizes, strict=True)) >= 5

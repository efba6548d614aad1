"""Semantic segmentation models from plain values, torchvision's (DeepLabV3, FCN, LRASPP) and
segmentation_models_pytorch's (U-Net to Segformer, losslab.modeling.smp_networks), called as losslab's detectors are:
a list of CHW images in [0, 1] of any sizes, with targets in train mode.

- train mode: `model(images, targets)` -> {"pixel": loss of the main output, "aux": loss of the auxiliary head}, each
  target a dict with "mask" (int64 [H, W]: class index per pixel, 255 = ignore);
- eval mode: `model(images)` -> one dict per image: "mask" (int64 [H, W], the most probable class of each pixel) and
  "probabilities" (float [C, H, W], softmax), at the image's own size.

Inside, images are normalised with ImageNet's mean and std and resized (shorter side to min_size, longer side at most
max_size) by torchvision's detection transform, then padded into one batch; targets are resized with nearest
neighbours and padded with the ignore index, so padding counts in no loss. The padded sides are multiples of 32
(torchvision's networks) or of what the smp network needs (its encoder's output stride). The loss is computed on the
network's output at the resized size (both libraries' networks upsample their logits to their input); predictions are
upsampled (bilinear) back to each image's own size before the softmax.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.models import segmentation
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from losslab.losses.catalogue import IGNORE_INDEX
from losslab.losses.segmentation_build import SegmentationLosses
from losslab.modeling.smp_networks import ARCHS as SMP_ARCHS
from losslab.modeling.smp_networks import create_smp_network

IMAGENET_MEAN = [0.485, 0.456, 0.406]  # what torchvision's segmentation weights were trained with
IMAGENET_STD = [0.229, 0.224, 0.225]

# arch -> backbone -> torchvision's builder
BUILDERS = {
    "deeplabv3": {"resnet50": segmentation.deeplabv3_resnet50, "resnet101": segmentation.deeplabv3_resnet101,
                  "mobilenet_v3_large": segmentation.deeplabv3_mobilenet_v3_large},
    "fcn": {"resnet50": segmentation.fcn_resnet50, "resnet101": segmentation.fcn_resnet101},
    "lraspp": {"mobilenet_v3_large": segmentation.lraspp_mobilenet_v3_large},
}
SEGMENTATION_ARCHS = (*BUILDERS, *SMP_ARCHS)
TORCHVISION_SIZE_DIVISIBLE = 32  # GeneralizedRCNNTransform's default: the deepest stride of torchvision's backbones
WITH_AUX = ("deeplabv3", "fcn")  # the architectures with an auxiliary head (LRASPP has none)
BATCHNORM_MOMENTUM = 0.1  # PyTorch's default, for networks trained from scratch (see create_network)


def create_network(arch: str, backbone: str, num_classes: int, aux_loss: bool, pretrained: bool,
                   from_scratch: bool = False) -> nn.Module:
    """torchvision's `arch` on `backbone` for `num_classes` pixel classes (background included), from scratch, or
    with an ImageNet backbone when `pretrained` (torchvision's download).

    `from_scratch` (no weights of any kind will be loaded): BatchNorm keeps PyTorch's default momentum, 0.1. Why?
    torchvision's MobileNetV3 uses 0.01, tuned for hundreds of ImageNet epochs: in a run of a few hundred steps its
    running statistics stay near their initial values, so the validation loss and the metrics (BatchNorm in eval
    mode) lag far behind what the network has learned.
    """
    builder = BUILDERS[arch][backbone]
    extra = {"aux_loss": aux_loss} if arch in WITH_AUX else {}
    network = builder(weights=None, weights_backbone="DEFAULT" if pretrained else None, num_classes=num_classes,
                      **extra)
    if from_scratch:
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = BATCHNORM_MOMENTUM
    return network


class SegmentationPredictor(nn.Module):
    """The inference half: images in, a class mask and probabilities per image out. Scriptable (TorchScript) and
    traceable (ONNX) for one image of any size; losslab export saves this module."""

    def __init__(self, network: nn.Module, transform: GeneralizedRCNNTransform):
        super().__init__()
        self.network = network
        self.transform = transform

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        batch, _ = self.transform(images)
        logits = self.network(batch.tensors)["out"]
        results: list[dict[str, Tensor]] = []
        for i, (image, size) in enumerate(zip(images, batch.image_sizes)):  # noqa: B905 (TorchScript has no strict)
            resized = logits[i : i + 1, :, : size[0], : size[1]]
            # Sizes read from the tensor, never as Python ints, so a traced (ONNX) model keeps them dynamic.
            full = F.interpolate(resized, size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
            probabilities = full.softmax(dim=0)
            results.append({"mask": probabilities.argmax(dim=0), "probabilities": probabilities})
        return results


class Segmenter(SegmentationPredictor):
    """A segmentation network (torchvision's, or smp's in an SmpNetwork) with losslab's per-pixel losses (see the
    module's docstring)."""

    def __init__(self, network: nn.Module, losses: SegmentationLosses, min_size: int, max_size: int,
                 size_divisible: int = TORCHVISION_SIZE_DIVISIBLE):
        super().__init__(network, GeneralizedRCNNTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD,
                                                           size_divisible=size_divisible))
        self.losses = losses

    @property
    def backbone(self) -> nn.Module:
        """The feature extractor (trainer.compile compiles it in place)."""
        return self.network.backbone

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        if not self.training:
            return super().forward(images)
        if targets is None:
            raise ValueError("targets are needed in training mode")
        batch, _ = self.transform(list(images))
        outputs = self.network(batch.tensors)
        target = batch_targets([t["mask"] for t in targets], batch.image_sizes, batch.tensors.shape[-2:])
        losses = {"pixel": self.losses.pixel(outputs["out"], target)}
        if self.losses.aux is not None and "aux" in outputs:
            losses["aux"] = self.losses.aux(outputs["aux"], target)
        return losses


def batch_targets(masks: list[Tensor], sizes: list[tuple[int, int]], padded: tuple[int, int]) -> Tensor:
    """The masks resized (nearest neighbour: class indices stay class indices) to their images' resized sizes and
    padded with IGNORE_INDEX to the batch's padded size: int64 [B, H, W]."""
    target = masks[0].new_full((len(masks), *padded), IGNORE_INDEX, dtype=masks[0].dtype)
    for i, (mask, (height, width)) in enumerate(zip(masks, sizes, strict=True)):
        if mask.shape[-2:] != (height, width):
            mask = F.interpolate(mask[None, None].float(), size=(height, width), mode="nearest")[0, 0].to(mask.dtype)
        target[i, :height, :width] = mask
    return target.long()


def build_segmenter(model: dict, losses: SegmentationLosses, num_classes: int) -> Segmenter:
    """The segmenter a plain task=segmentation `model` section describes for `num_classes` pixel classes,
    background included, from random (or ImageNet-backbone) weights: torchvision's ({"arch", "backbone", "aux_loss",
    "pretrained", "min_size", "max_size", ...}) or smp's ({"arch", "encoder", "encoder_depth", "options", "min_size",
    "max_size", ...}). losslab.modeling.segmentation_weights and smp_weights load trained ones."""
    if model["arch"] in SMP_ARCHS:
        network = create_smp_network(model, num_classes)
        return Segmenter(network, losses, model["min_size"], model["max_size"], network.input_multiple)
    from_scratch = not model["pretrained"] and model.get("weights") is None
    network = create_network(model["arch"], model["backbone"], num_classes, has_aux(model), model["pretrained"],
                             from_scratch)
    return Segmenter(network, losses, model["min_size"], model["max_size"])


def has_aux(model: dict) -> bool:
    """Whether the model section describes a network with an auxiliary head."""
    return model["arch"] in WITH_AUX and bool(model.get("aux_loss"))

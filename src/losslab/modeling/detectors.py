"""torchvision detectors from plain values, with losslab's loss-configurable heads in place of the stock ones."""

from __future__ import annotations

from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    mobilenet_backbone,
    resnet_fpn_backbone,
)
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from losslab.losses.build import ComponentLosses
from losslab.losses.catalogue import ARCH_COMPONENTS
from losslab.modeling.heads import LossRetinaNetHead, LossRoIHeads, LossRPN

ARCHS = tuple(ARCH_COMPONENTS)
BACKBONES = ("resnet18_fpn", "resnet50_fpn", "mobilenet_v3_fpn")


def build_detector(model: dict, losses: ComponentLosses, num_classes: int) -> nn.Module:
    """The detector a plain `model` config section describes ({"arch": ..., "backbone": ..., ...}), for
    `num_classes` object classes (background excluded), using `losses`."""
    return create_detector(
        model["arch"],
        model["backbone"],
        num_classes,
        losses,
        pretrained=model["pretrained"],
        trainable_backbone_layers=model["trainable_backbone_layers"],
        min_size=model["min_size"],
        max_size=model["max_size"],
        box_batch_size_per_image=model["box_batch_size_per_image"],
        rpn_post_nms_top_n_test=model["rpn_post_nms_top_n_test"],
    )


def create_detector(
    arch: str,
    backbone: str,
    num_classes: int,
    losses: ComponentLosses,
    *,
    pretrained: bool = False,
    trainable_backbone_layers: int | None = None,
    min_size: int = 800,
    max_size: int = 1333,
    box_batch_size_per_image: int = 512,
    rpn_post_nms_top_n_test: int = 1000,
) -> nn.Module:
    """A torchvision `arch` on an FPN `backbone` for `num_classes` object classes, using `losses`.

    Without pretrained weights BatchNorm is trainable and every backbone layer trains; with them
    (ImageNet weights, the only download losslab ever makes) torchvision's choices apply:
    frozen BatchNorm and the last 3 layers trainable.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")
    features = feature_pyramid(backbone, pretrained, trainable_backbone_layers, for_retinanet=arch == "retinanet")
    anchors = anchor_generator(arch, backbone)
    labels = num_classes + 1  # torchvision counts background as class 0
    if arch == "retinanet":
        head = LossRetinaNetHead(features.out_channels, anchors.num_anchors_per_location()[0], labels, losses)
        return RetinaNet(features, labels, min_size=min_size, max_size=max_size, anchor_generator=anchors, head=head)
    detector = FasterRCNN if arch == "faster_rcnn" else MaskRCNN
    model = detector(
        features,
        labels,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_batch_size_per_image=box_batch_size_per_image,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
    )
    model.rpn = LossRPN(model.rpn, losses)
    model.roi_heads = LossRoIHeads(model.roi_heads, losses)
    return model


def feature_pyramid(
    backbone: str, pretrained: bool, trainable_layers: int | None, *, for_retinanet: bool
) -> BackboneWithFPN:
    """The backbone with its FPN: P2-P6 for R-CNN, P3-P7 for RetinaNet (as torchvision builds them)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {BACKBONES}")
    weights = "DEFAULT" if pretrained else None
    norm_layer = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    retinanet_levels = {"extra_blocks": LastLevelP6P7(256, 256)} if for_retinanet else {}
    if backbone == "mobilenet_v3_fpn":
        layers = (3 if pretrained else 6) if trainable_layers is None else trainable_layers
        return mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=weights, fpn=True,
                                  norm_layer=norm_layer, trainable_layers=layers, **retinanet_levels)
    layers = (3 if pretrained else 5) if trainable_layers is None else trainable_layers
    if for_retinanet:
        retinanet_levels["returned_layers"] = [2, 3, 4]
    return resnet_fpn_backbone(backbone_name=backbone.removesuffix("_fpn"), weights=weights,
                               norm_layer=norm_layer, trainable_layers=layers, **retinanet_levels)


def anchor_generator(arch: str, backbone: str) -> AnchorGenerator:
    """torchvision's anchors for each architecture, one size set per pyramid level."""
    ratios = (0.5, 1.0, 2.0)
    if arch == "retinanet":
        levels = (32, 64, 128, 256) if backbone == "mobilenet_v3_fpn" else (32, 64, 128, 256, 512)
        sizes = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in levels)
    elif backbone == "mobilenet_v3_fpn":
        sizes = ((32, 64, 128, 256, 512),) * 3
    else:
        sizes = ((32,), (64,), (128,), (256,), (512,))
    return AnchorGenerator(sizes, (ratios,) * len(sizes))

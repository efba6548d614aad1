"""torchvision detectors from plain values, with losslab's loss-configurable heads in place of the stock ones (the
single-stage FCOS and SSDs: losslab.modeling.single_stage)."""

from __future__ import annotations

from functools import partial

import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor, mobilenet_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, RPNHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from losslab.losses.build import ComponentLosses
from losslab.losses.catalogue import ARCH_COMPONENTS
from losslab.modeling.freezing import freeze, freeze_names
from losslab.modeling.heads import LossRetinaNetHead, LossRoIHeads, LossRPN
from losslab.modeling.single_stage import create_fcos, create_ssd, create_ssdlite

ARCHS = tuple(ARCH_COMPONENTS)
BACKBONES = ("resnet18_fpn", "resnet50_fpn", "mobilenet_v3_fpn")
# Every layer of the body.
MAX_TRAINABLE_LAYERS = {"resnet18_fpn": 5, "resnet50_fpn": 5, "mobilenet_v3_fpn": 6, "vgg16": 5,
                        "mobilenet_v3_large": 6}
# The backbones of each architecture: the FPN ones above, except for the SSDs, whose backbone is fixed.
ARCH_BACKBONES = {arch: BACKBONES for arch in ARCHS} | {"ssd": ("vgg16",), "ssdlite": ("mobilenet_v3_large",)}
# BatchNorm over 1x1 features (SSDlite's last extra layers at 320 px): a train batch of one image fails there.
LONE_IMAGE_FAILS = ("ssdlite",)
# Where P3-P7 (RetinaNet's FPN levels) feed the head rather than R-CNN's P2-P6.
P3_P7 = ("retinanet", "fcos")
# torchvision's original R50-FPN detectors (v1) and the improved ones of Li et al. 2021 (v2: a two-conv RPN head,
# conv box and mask heads with BatchNorm, an FPN with BatchNorm; RetinaNet: P6 from C5 and a GroupNorm head).
VARIANTS = ("v1", "v2")
# How a detector's weights start, which decides its BatchNorm and default trainable layers as torchvision does:
# random (trainable BatchNorm, every layer trains), ImageNet backbone weights (downloaded by torchvision), or
# trained weights losslab loads after building (model.weights: frozen BatchNorm, the last 3 layers train).
SCRATCH, IMAGENET, WEIGHTS = "scratch", "imagenet", "weights"


def build_detector(model: dict, losses: ComponentLosses, num_classes: int) -> nn.Module:
    """The detector a plain `model` config section describes ({"arch": ..., "backbone": ..., ...}), for
    `num_classes` object classes (background excluded), using `losses`; its start weights are not loaded here."""
    detector = create_detector(
        model["arch"],
        model["backbone"],
        num_classes,
        losses,
        variant=model["variant"],
        start=start_kind(model),
        trainable_backbone_layers=model["trainable_backbone_layers"],
        min_size=model["min_size"],
        max_size=model["max_size"],
        box_batch_size_per_image=model["box_batch_size_per_image"],
        rpn_post_nms_top_n_test=model["rpn_post_nms_top_n_test"],
    )
    freeze(detector, freeze_names(model["freeze"]))
    return detector


def start_kind(model: dict) -> str:
    """SCRATCH, IMAGENET or WEIGHTS: how the `model` section's detector starts."""
    if model["weights"] is not None:
        return WEIGHTS
    return IMAGENET if model["pretrained"] else SCRATCH


def create_detector(
    arch: str,
    backbone: str,
    num_classes: int,
    losses: ComponentLosses,
    *,
    variant: str = "v1",
    start: str = SCRATCH,
    trainable_backbone_layers: int | None = None,
    min_size: int = 800,
    max_size: int = 1333,
    box_batch_size_per_image: int = 512,
    rpn_post_nms_top_n_test: int = 1000,
) -> nn.Module:
    """A torchvision `arch` (`variant` v1 or v2) on an FPN `backbone` (the SSDs: their own) for `num_classes` object
    classes, using `losses`, built for its `start` (SCRATCH, IMAGENET or WEIGHTS; see feature_pyramid). SSDlite takes
    `min_size` as the side of its square input; SSD300's is 300."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")
    labels = num_classes + 1  # torchvision counts background as class 0
    if arch == "ssd":
        return create_ssd(labels, losses, imagenet=start == IMAGENET, trained=start != SCRATCH,
                          trainable_layers=trainable_backbone_layers)
    if arch == "ssdlite":
        return create_ssdlite(labels, losses, min_size, imagenet=start == IMAGENET,
                              trainable_layers=trainable_backbone_layers)
    v2 = variant == "v2"
    features = feature_pyramid(backbone, start, trainable_backbone_layers, for_retinanet=arch in P3_P7,
                               variant=variant)
    if arch == "fcos":
        return create_fcos(features, backbone, labels, losses, min_size, max_size)
    anchors = anchor_generator(arch, backbone)
    num_anchors = anchors.num_anchors_per_location()[0]
    if arch == "retinanet":
        head = LossRetinaNetHead(features.out_channels, num_anchors, labels, losses,
                                 norm_layer=partial(nn.GroupNorm, 32) if v2 else None)
        return RetinaNet(features, labels, min_size=min_size, max_size=max_size, anchor_generator=anchors, head=head)
    heads = {}
    if v2:  # torchvision's fasterrcnn_resnet50_fpn_v2 and maskrcnn_resnet50_fpn_v2 heads
        heads["rpn_head"] = RPNHead(features.out_channels, num_anchors, conv_depth=2)
        heads["box_head"] = FastRCNNConvFCHead((features.out_channels, 7, 7), [256] * 4, [1024],
                                               norm_layer=nn.BatchNorm2d)
        if arch == "mask_rcnn":
            heads["mask_head"] = MaskRCNNHeads(features.out_channels, [256] * 4, 1, norm_layer=nn.BatchNorm2d)
    detector = FasterRCNN if arch == "faster_rcnn" else MaskRCNN
    model = detector(
        features,
        labels,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_batch_size_per_image=box_batch_size_per_image,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        **heads,
    )
    model.rpn = LossRPN(model.rpn, losses)
    model.roi_heads = LossRoIHeads(model.roi_heads, losses)
    return model


def feature_pyramid(
    backbone: str, start: str, trainable_layers: int | None, *, for_retinanet: bool, variant: str = "v1"
) -> BackboneWithFPN:
    """The backbone with its FPN: P2-P6 for R-CNN, P3-P7 for RetinaNet (as torchvision builds them).

    From scratch (SCRATCH) BatchNorm is trainable and every backbone layer trains. A backbone that starts from
    trained weights (IMAGENET, downloaded by torchvision; WEIGHTS, loaded by losslab afterwards) gets
    torchvision's choices for pretrained models: frozen BatchNorm and the last 3 layers trainable. (torchvision's
    v2 builders keep the backbone's BatchNorm trainable; losslab freezes it as for v1, because batches of a few
    images give poor statistics: the v2 FPN and heads keep their trainable BatchNorm.)
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {BACKBONES}")
    weights = "DEFAULT" if start == IMAGENET else None
    norm_layer = nn.BatchNorm2d if start == SCRATCH else FrozenBatchNorm2d
    v2 = variant == "v2"
    # Created first, as torchvision does: the random initialisation of a seed stays the same.
    retinanet_levels = {"extra_blocks": LastLevelP6P7(2048 if v2 else 256, 256)} if for_retinanet else {}
    layers = trainable_backbone_layers(backbone, start, trainable_layers)
    if backbone == "mobilenet_v3_fpn":
        return mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=weights, fpn=True,
                                  norm_layer=norm_layer, trainable_layers=layers, **retinanet_levels)
    if for_retinanet:
        retinanet_levels["returned_layers"] = [2, 3, 4]
    body = getattr(torchvision.models, backbone.removesuffix("_fpn"))(weights=weights, norm_layer=norm_layer)
    # torchvision's own FPN extractor (what resnet_fpn_backbone calls), which also takes the v2 FPN's norm layer.
    fpn_norm = nn.BatchNorm2d if v2 and not for_retinanet else None
    return _resnet_fpn_extractor(body, layers, norm_layer=fpn_norm, **retinanet_levels)


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


def trainable_backbone_layers(backbone: str, start: str, trainable_layers: int | None) -> int:
    """How many backbone layers train: `trainable_layers` (model.trainable_backbone_layers), or for null
    torchvision's choice: every layer from scratch (SCRATCH), the last 3 from trained weights."""
    if trainable_layers is not None:
        return trainable_layers
    if start != SCRATCH:
        return 3
    return MAX_TRAINABLE_LAYERS[backbone]

"""Build a torchvision detector with the configured losses wired into its heads."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
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

from losslab.data import load_dataset
from losslab.heads import LossRetinaNetHead, LossRoIHeads, LossRPN
from losslab.losses import CONFIG_KEYS, ComponentLosses, build_losses

ARCHS = ("faster_rcnn", "mask_rcnn", "retinanet")
BACKBONES = ("resnet18_fpn", "resnet50_fpn", "mobilenet_v3_fpn")


def build_model(cfg: DictConfig, num_classes: int | None = None, class_counts: list[int] | None = None) -> nn.Module:
    """The detector `cfg.model` describes, with `cfg.loss` wired in.

    `num_classes` counts object classes (background excluded); by default it is read from the
    configured dataset's class list. `class_counts` (objects per class in the train split) is
    needed only by `loss/cls=weighted_ce` with automatic weights.
    """
    if num_classes is None:
        num_classes = len(load_dataset(OmegaConf.to_container(cfg.data)).classes)
    arch = cfg.model.arch
    choices, weights = loss_choices(cfg.loss)
    losses = build_losses(arch, choices, weights, class_counts)
    return create_detector(
        arch,
        cfg.model.backbone,
        num_classes,
        losses,
        pretrained=cfg.model.pretrained,
        trainable_backbone_layers=cfg.model.trainable_backbone_layers,
        min_size=cfg.model.min_size,
        max_size=cfg.model.max_size,
        box_batch_size_per_image=cfg.model.box_batch_size_per_image,
        rpn_post_nms_top_n_test=cfg.model.rpn_post_nms_top_n_test,
    )


def loss_choices(loss_cfg: DictConfig) -> tuple[dict[str, dict], dict[str, float]]:
    """The `loss` config section as plain ({config key: choice}, {component: weight})."""
    plain = OmegaConf.to_container(loss_cfg, resolve=True)
    return {key: plain[key] for key in CONFIG_KEYS}, plain["weights"]


def set_losses(model: nn.Module, losses: ComponentLosses) -> None:
    """Make every loss-computing head of a model built here use `losses`."""
    for head in loss_heads(model):
        head.losses = losses


def get_losses(model: nn.Module) -> ComponentLosses:
    return loss_heads(model)[0].losses


def loss_heads(model: nn.Module) -> list[nn.Module]:
    heads = [m for m in model.modules() if isinstance(m, LossRPN | LossRoIHeads | LossRetinaNetHead)]
    if not heads:
        raise TypeError("the model was not built by losslab: it has no loss-configurable heads")
    return heads


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

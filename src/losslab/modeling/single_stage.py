"""torchvision's FCOS, SSD300-VGG16 and SSDlite320-MobileNetV3 from plain values, with losslab's loss-configurable
halves (losslab.modeling.dense_heads). Each is built as torchvision's own builder builds it (fcos_resnet50_fpn,
ssd300_vgg16, ssdlite320_mobilenet_v3_large), its layers created in the same order, so that a seed gives the same
initial weights and torchvision's COCO weights load into it."""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision.models import mobilenet_v3_large, vgg16
from torchvision.models.detection import FCOS
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.ssd import _vgg_extractor
from torchvision.models.detection.ssdlite import SSDLiteHead, _mobilenet_extractor, _normal_init

from losslab.losses.build import ComponentLosses
from losslab.modeling.dense_heads import LossFCOSHead, LossSSD

# The square side SSD300's default boxes are made for (their steps, and VGG's extra layers, fit 300 only).
SSD300_SIZE = 300
# How many backbone stages train when trained weights start the model (torchvision's defaults for trained models);
# from scratch every stage trains.
TRAINED_LAYERS = {"ssd": 4, "ssdlite": 6}
STAGES = {"ssd": 5, "ssdlite": 6}


def create_fcos(features: nn.Module, backbone: str, num_labels: int, losses: ComponentLosses, min_size: int,
                max_size: int) -> FCOS:
    """FCOS on the FPN `features` (P3-P7, as RetinaNet's) for `num_labels` classes (background included, as
    torchvision counts them), with one anchor point per location whose size is its level's stride (FCOS's object
    size range of a level is 4 to 8 times it). MobileNetV3's FPN has two levels of stride 32: the second takes the
    next size range, as RetinaNet's anchors there do (32 to 256)."""
    sizes = (32, 64, 128, 256) if backbone == "mobilenet_v3_fpn" else (8, 16, 32, 64, 128)
    anchors = AnchorGenerator(tuple((s,) for s in sizes), ((1.0,),) * len(sizes))
    head = LossFCOSHead(features.out_channels, 1, num_labels, losses)
    return FCOS(features, num_labels, min_size=min_size, max_size=max_size, anchor_generator=anchors, head=head)


def create_ssd(num_labels: int, losses: ComponentLosses, *, imagenet: bool, trained: bool,
               trainable_layers: int | None) -> LossSSD:
    """torchvision's SSD300-VGG16 for `num_labels` classes: `imagenet` downloads VGG16's ImageNet features
    (torchvision's), `trained` says that trained weights start it (the last 4 stages train by default)."""
    layers = trainable_layers if trainable_layers is not None else TRAINED_LAYERS["ssd"] if trained else STAGES["ssd"]
    backbone = _vgg_extractor(vgg16(weights="IMAGENET1K_FEATURES" if imagenet else None), False, layers)
    anchors = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                                  scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])
    # VGG's caffe weights take 0-255 pixels minus the mean, as torchvision's builder sets.
    return LossSSD(backbone, anchors, (SSD300_SIZE, SSD300_SIZE), num_labels, losses=losses,
                   image_mean=[0.48235, 0.45882, 0.40784], image_std=[1.0 / 255.0] * 3)


def create_ssdlite(num_labels: int, losses: ComponentLosses, size: int, *, imagenet: bool,
                   trainable_layers: int | None) -> LossSSD:
    """torchvision's SSDlite-MobileNetV3-Large for `num_labels` classes on `size` x `size` inputs (torchvision: 320).
    Without ImageNet weights its backbone has MobileNetV3's reduced tail and SSDlite's normal initialisation, as
    torchvision builds it (and as its COCO weights were trained)."""
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    body = mobilenet_v3_large(weights="DEFAULT" if imagenet else None, norm_layer=norm_layer,
                              reduced_tail=not imagenet)
    if not imagenet:
        _normal_init(body)
    layers = STAGES["ssdlite"] if trainable_layers is None else trainable_layers
    backbone = _mobilenet_extractor(body, layers, norm_layer)
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    out_channels = det_utils.retrieve_out_channels(backbone, (size, size))
    head = SSDLiteHead(out_channels, anchors.num_anchors_per_location(), num_labels, norm_layer)
    return LossSSD(backbone, anchors, (size, size), num_labels, losses=losses, head=head, score_thresh=0.001,
                   nms_thresh=0.55, detections_per_img=300, topk_candidates=300, image_mean=[0.5] * 3,
                   image_std=[0.5] * 3)

"""torchvision's COCO-trained detector weights (`model.weights=coco`): which file each architecture needs, found in
torchvision's own cache (TORCH_HOME) under torchvision's own file name, and downloaded only when allowed and
possible. losslab never downloads anything else (besides the ImageNet backbones torchvision fetches for
model.pretrained=true)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from losslab.distributed import broadcast, launched_world
from losslab.errors import LosslabError

log = logging.getLogger(__name__)

# (arch, backbone, variant) -> torchvision's weights enum with COCO_V1 weights for that detector.
COCO_WEIGHTS = {
    ("faster_rcnn", "resnet50_fpn", "v1"): "FasterRCNN_ResNet50_FPN_Weights",
    ("faster_rcnn", "resnet50_fpn", "v2"): "FasterRCNN_ResNet50_FPN_V2_Weights",
    ("faster_rcnn", "mobilenet_v3_fpn", "v1"): "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    ("mask_rcnn", "resnet50_fpn", "v1"): "MaskRCNN_ResNet50_FPN_Weights",
    ("mask_rcnn", "resnet50_fpn", "v2"): "MaskRCNN_ResNet50_FPN_V2_Weights",
    ("retinanet", "resnet50_fpn", "v1"): "RetinaNet_ResNet50_FPN_Weights",
    ("retinanet", "resnet50_fpn", "v2"): "RetinaNet_ResNet50_FPN_V2_Weights",
    ("fcos", "resnet50_fpn", "v1"): "FCOS_ResNet50_FPN_Weights",
    ("ssd", "vgg16", "v1"): "SSD300_VGG16_Weights",
    ("ssdlite", "mobilenet_v3_large", "v1"): "SSDLite320_MobileNet_V3_Large_Weights",
}
PROBE_TIMEOUT_S = 5.0  # how long "can this machine reach the download server?" may take


def coco_choices(arch: str) -> str:
    """The backbones and variants with COCO weights for `arch`, for messages: 'resnet50_fpn (variant v1 or v2) ...'."""
    variants: dict[str, list[str]] = {}
    for name, backbone, variant in COCO_WEIGHTS:
        if name == arch:
            variants.setdefault(backbone, []).append(variant)
    return " or ".join(f"{backbone} (variant {' or '.join(names)})" for backbone, names in variants.items())


def coco_weights(arch: str, backbone: str, variant: str) -> torchvision.models.WeightsEnum:
    return torchvision.models.get_weight(f"{COCO_WEIGHTS[(arch, backbone, variant)]}.COCO_V1")


def cached_file(weights: torchvision.models.WeightsEnum) -> Path:
    """Where torchvision keeps `weights`: TORCH_HOME/hub/checkpoints/<the URL's file name> (~/.cache/torch/hub by
    default), the file torchvision's own builders read."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def known_coco_file(name: str) -> str | None:
    """'model=A model.backbone=B model.variant=V' when `name` is torchvision's file name of that detector's COCO
    weights; None for any other name."""
    for (arch, backbone, variant), enum in COCO_WEIGHTS.items():
        if cached_file(torchvision.models.get_weight(f"{enum}.COCO_V1")).name == name:
            return f"model={arch} model.backbone={backbone} model.variant={variant}"
    return None


def coco_weights_file(arch: str, backbone: str, variant: str, download: bool) -> Path:
    """The COCO weights file of the detector, from torchvision's cache; when it is not there, downloaded into it if
    `download` allows and the machine can reach the server, else a LosslabError saying which file is needed, where
    to put it and how to get it. Under torchrun only the main process downloads; the others wait for it."""
    weights = coco_weights(arch, backbone, variant)
    if launched_world().main:
        path = cached_file(weights)
        if not path.is_file():
            fetch(weights, path, download)
    return Path(broadcast(str(cached_file(weights))))


def fetch(weights: torchvision.models.WeightsEnum, path: Path, download: bool, choice: str = "coco") -> None:
    """Download `weights` (what model.weights=`choice` names) to `path`, torchvision's cache, checking the hash its
    file name carries."""
    if not download:
        raise LosslabError(missing_message(weights, path, "model.download=false forbids downloading it", choice))
    host = urlparse(weights.url).hostname
    try:
        socket.create_connection((host, 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise LosslabError(missing_message(weights, path, f"this machine cannot reach {host} ({error})",
                                           choice)) from error
    log.warning("downloading torchvision's %s weights %s (%.0f MB) into torchvision's cache %s "
                "(model.download=false forbids downloads)", choice, weights.url, weights.meta.get("_file_size", 0),
                path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    hash_prefix = torch.hub.HASH_REGEX.search(path.name).group(1)
    try:
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=hash_prefix, progress=True)
    except (OSError, RuntimeError) as error:  # network errors, a full disk, a hash that does not match
        raise LosslabError(missing_message(weights, path, f"downloading it failed ({error})", choice)) from error


def missing_message(weights: torchvision.models.WeightsEnum, path: Path, reason: str, choice: str = "coco") -> str:
    """Which file model.weights=`choice` needs, why it is not there (`reason`), where to put it and how to get it."""
    enum = f"{type(weights).__name__}.{weights.name}"
    own_file = f"; or give its path: model.weights=/path/to/{path.name}" if choice == "coco" else ""
    return (f"model.weights={choice} needs torchvision's weights file {path.name} "
            f"({weights.meta.get('_file_size', 0):.0f} MB), which is not in torchvision's cache {path.parent}, and "
            f"{reason}. Get it on a machine with internet access, from {weights.url} (or with `python -c \"import "
            f"torchvision; torchvision.models.get_weight('{enum}').get_state_dict()\"`, which puts it into "
            f"that machine's cache), and copy it to {path} (the cache is $TORCH_HOME/hub/checkpoints, by default "
            f"~/.cache/torch/hub/checkpoints){own_file}.")

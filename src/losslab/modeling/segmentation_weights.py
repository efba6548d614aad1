"""Where a segmentation run's weights start (`model.weights`): null (random, or an ImageNet backbone with
model.pretrained) or `coco_voc`, torchvision's weights trained on COCO's images with the 20 Pascal VOC classes.

The same rules as the detectors' COCO weights: the file is torchvision's own, under its own name, in torchvision's
cache (TORCH_HOME/hub/checkpoints); it is downloaded only when it is not there, model.download allows it and the
server answers, and otherwise the error says which file is needed, where to put it and how to get it. Weights whose
shape fits are loaded; the last layer of the classifier (and of the auxiliary head) is left random when the class
count is not VOC's 21.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

from losslab.errors import LosslabError
from losslab.modeling.freezing import parameter_counts
from losslab.modeling.surgery import fit_weights
from losslab.modeling.torchvision_weights import cached_file, fetch

log = logging.getLogger(__name__)

COCO_VOC = "coco_voc"
# (arch, backbone) -> torchvision's weights enum with COCO_WITH_VOC_LABELS_V1 weights
WEIGHTS_ENUMS = {
    ("deeplabv3", "resnet50"): "DeepLabV3_ResNet50_Weights",
    ("deeplabv3", "resnet101"): "DeepLabV3_ResNet101_Weights",
    ("deeplabv3", "mobilenet_v3_large"): "DeepLabV3_MobileNet_V3_Large_Weights",
    ("fcn", "resnet50"): "FCN_ResNet50_Weights",
    ("fcn", "resnet101"): "FCN_ResNet101_Weights",
    ("lraspp", "mobilenet_v3_large"): "LRASPP_MobileNet_V3_Large_Weights",
}


def coco_voc_weights(arch: str, backbone: str) -> torchvision.models.WeightsEnum:
    return torchvision.models.get_weight(f"{WEIGHTS_ENUMS[(arch, backbone)]}.COCO_WITH_VOC_LABELS_V1")


def load_start_weights(network: nn.Module, model: dict) -> dict | None:
    """Load what `model.weights` names into `network` (torchvision's segmentation model) and log and return what
    the run starts from, as a detector's start: {"weights", "file", "tensors": {"loaded", "reinitialised"} (None
    without weights), "parameters", "trainable_parameters", "batch_norm_layers"}."""
    unloaded = {"weights": None, "file": None, "tensors": None}
    start = unloaded if model["weights"] is None else load_weights(network, model)
    start |= parameter_counts(network)
    log.info("%s of %s parameters train", f"{start['trainable_parameters']:,}", f"{start['parameters']:,}")
    return start


def load_weights(network: nn.Module, model: dict) -> dict:
    if model["weights"] != COCO_VOC:
        raise LosslabError(f"model.weights={model['weights']}: expected null or {COCO_VOC} (torchvision's weights "
                           "trained on COCO with the Pascal VOC classes).")
    path = weights_file(model["arch"], model["backbone"], model["download"])
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise LosslabError(f"{path} could not be read as torchvision's weights ({error}); delete it and let "
                           "model.download=true fetch it again, or copy a good copy there.") from error
    fits = fit_weights(network, state, path, f"model={model['arch']} model.backbone={model['backbone']}",
                       class_specific=CLASS_SPECIFIC, optional=OPTIONAL)
    counts = {kind: sum(fits[kind].values()) for kind in ("loaded", "reinitialised")}
    log.info("start: %s weights from %s: %d tensors loaded, %d left random (the class count differs from VOC's 21)",
             COCO_VOC, path, counts["loaded"], counts["reinitialised"])
    return {"weights": COCO_VOC, "file": str(path), "tensors": counts}


# The last layer of the classifier and of the auxiliary head: one output channel per class.
CLASS_SPECIFIC = ("classifier.4.", "aux_classifier.4.", "classifier.low_classifier.", "classifier.high_classifier.")
OPTIONAL = ("aux_classifier.",)  # a model without an auxiliary head starts from weights with one, and back


def weights_file(arch: str, backbone: str, download: bool) -> Path:
    """The COCO_VOC weights file of the model in torchvision's cache, downloaded into it only when allowed and
    possible; otherwise a LosslabError saying which file is needed, where to put it and how to get it."""
    weights = coco_voc_weights(arch, backbone)
    path = cached_file(weights)
    if not path.is_file():
        fetch(weights, path, download, COCO_VOC)
    return path

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
    """Load what `model.weights` names into `network` (torchvision's segmentation model); return what was loaded
    ({"weights", "file", "tensors": {"loaded", "reinitialised"}}) or None when the run starts without weights."""
    if model["weights"] is None:
        return None
    if model["weights"] != COCO_VOC:
        raise LosslabError(f"model.weights={model['weights']}: expected null or {COCO_VOC} (torchvision's weights "
                           "trained on COCO with the Pascal VOC classes).")
    path = weights_file(model["arch"], model["backbone"], model["download"])
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise LosslabError(f"{path} could not be read as torchvision's weights ({error}); delete it and let "
                           "model.download=true fetch it again, or copy a good copy there.") from error
    counts = fit_state(network, state, path)
    log.info("start: %s weights from %s: %d tensors loaded, %d left random (the class count differs from VOC's 21)",
             COCO_VOC, path, counts["loaded"], counts["reinitialised"])
    return {"weights": COCO_VOC, "file": str(path), "tensors": counts}


def fit_state(network: nn.Module, state: dict, path: Path) -> dict[str, int]:
    """Copy every tensor of `state` whose name and shape fit `network`; the class-specific last layers that do not
    fit stay as built. Any other mismatch means weights of another model: a LosslabError naming the first ones."""
    own = network.state_dict()
    fitting = {name: value for name, value in state.items() if name in own and own[name].shape == value.shape}
    classifier_layers = [name for name in own if name not in fitting and _class_specific(name)]
    aux_extra = [name for name in state if name not in own and name.startswith("aux_classifier.")]
    foreign = sorted(set(state) - set(fitting) - set(classifier_layers) - set(aux_extra))
    missing = sorted(set(own) - set(fitting) - set(classifier_layers))
    if foreign or missing:
        raise LosslabError(f"{path} does not fit the configured model: {len(foreign)} of its tensors have no place "
                           f"in it ({', '.join(foreign[:3]) or 'none'}) and {len(missing)} of the model's have none "
                           f"in the file ({', '.join(missing[:3]) or 'none'}). It holds another architecture's "
                           "weights; delete it so that the right file is fetched.")
    network.load_state_dict(fitting, strict=False)
    return {"loaded": len(fitting), "reinitialised": len(classifier_layers)}


def _class_specific(name: str) -> bool:
    """The last layer of the classifier or of the auxiliary head: one output channel per class."""
    return name.startswith(("classifier.4.", "aux_classifier.4.", "classifier.low_classifier.",
                            "classifier.high_classifier."))


def weights_file(arch: str, backbone: str, download: bool) -> Path:
    """The COCO_VOC weights file of the model in torchvision's cache, downloaded into it only when allowed and
    possible; otherwise a LosslabError saying which file is needed, where to put it and how to get it."""
    weights = coco_voc_weights(arch, backbone)
    path = cached_file(weights)
    if not path.is_file():
        fetch(weights, path, download, COCO_VOC)
    return path

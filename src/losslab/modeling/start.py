"""Where a run's weights start (`model.weights`): null (random, or an ImageNet backbone with model.pretrained),
torchvision's COCO weights, a weights file, or another run's checkpoints/best.pt; found, checked and loaded into a
freshly built detector with head surgery."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from losslab.errors import LosslabError
from losslab.modeling.detectors import (
    MAX_TRAINABLE_LAYERS,
    SCRATCH,
    VARIANTS,
    start_kind,
    trainable_backbone_layers,
)
from losslab.modeling.freezing import FREEZABLE, freeze_names, parameter_counts
from losslab.modeling.surgery import counts_line, fit_weights
from losslab.modeling.torchvision_weights import COCO_WEIGHTS, coco_choices, coco_weights_file, known_coco_file
from losslab.modeling.weights import read_state_dict

log = logging.getLogger(__name__)

COCO = "coco"
# RetinaNet from random weights with AdamW (or Adam) above this lr diverged on photos at the default 128 px: VOC
# photos, train loss 2.53 -> 4.07 in epoch 2 at lr 5e-4 (issue 30), and the same on the photo-like proxy of
# scripts/bench_retinanet_scratch.py, which trained at this lr (docs/recipes.md gives the figures).
RETINANET_SCRATCH_LR = 1e-4
ADAPTIVE = ("torch.optim.AdamW", "torch.optim.Adam")
# The architectures torchvision has a v2 of (its improved R50-FPN detectors), and the freezable parts each lacks.
WITH_V2 = ("faster_rcnn", "mask_rcnn", "retinanet")
NOT_FREEZABLE = {"retinanet": ("rpn",), "fcos": ("rpn",), "ssd": ("rpn", "fpn"), "ssdlite": ("rpn", "fpn")}


def start_problems(model: dict) -> list[str]:
    """What is wrong with the start keys of a plain `model` section (weights, variant, pretrained, freeze,
    trainable_backbone_layers), as messages naming the keys; files are looked for when the run starts."""
    arch, backbone, variant, weights = model["arch"], model["backbone"], model["variant"], model["weights"]
    problems = []
    if variant not in VARIANTS:
        problems.append(f"model.variant={variant}: expected {' or '.join(VARIANTS)}")
    elif variant == "v2" and arch not in WITH_V2:
        problems.append(f"model.variant=v2: torchvision has a v2 of {', '.join(WITH_V2)} only, not of {arch}; "
                        "set model.variant=v1")
    elif variant == "v2" and backbone != "resnet50_fpn":
        problems.append(f"model.variant=v2 is torchvision's improved R50-FPN architecture; it needs "
                        f"model.backbone=resnet50_fpn, not {backbone}")
    if weights == COCO and (arch, backbone, variant) not in COCO_WEIGHTS:
        problems.append(f"model.weights=coco: torchvision has COCO weights for model={arch} with model.backbone="
                        f"{coco_choices(arch)}, not with {backbone} (variant {variant}); add "
                        f"model.backbone=resnet50_fpn (or use experiment=finetune, which sets it)")
    if weights is not None and model["pretrained"]:
        problems.append(f"model.pretrained=true downloads ImageNet backbone weights that model.weights={weights} "
                        "replaces; set model.pretrained=false")
    names = freeze_names(model["freeze"])
    parts = [name for name in FREEZABLE if name not in NOT_FREEZABLE.get(arch, ())]
    if not all(name in parts for name in names):
        problems.append(f"model.freeze={model['freeze']}: expected one of {', '.join(parts)} or a list of them "
                        f"(model.freeze=[{','.join(parts[:2])}])")
    layers, most = model["trainable_backbone_layers"], MAX_TRAINABLE_LAYERS.get(backbone, 5)
    if layers is not None and not 0 <= layers <= most:
        problems.append(f"model.trainable_backbone_layers={layers}: expected 0 to {most} for {backbone}, or null")
    return problems


def locate_start_weights(model: dict) -> Path | None:
    """The file `model.weights` names (downloading torchvision's COCO weights if allowed; see
    torchvision_weights), or None when the run starts without trained weights."""
    weights = model["weights"]
    if weights is None:
        return None
    if weights == COCO:
        return coco_weights_file(model["arch"], model["backbone"], model["variant"], model["download"])
    path = Path(weights).expanduser()
    if path.is_dir():
        best = path / "checkpoints" / "best.pt"
        if not best.is_file():
            raise LosslabError(f"model.weights={weights}: the folder has no checkpoints/best.pt; expected a "
                               "losslab run folder (outputs/DATE/TIME) that finished at least one epoch with "
                               "trainer.checkpoints=true, a weights file, or coco.")
        return best
    if not path.is_file():
        raise LosslabError(f"model.weights={weights}: no such file or folder; expected coco (torchvision's COCO "
                           "weights), a weights file (.pth, .pt) or a losslab run folder.")
    return path


def load_start_weights(detector: nn.Module, file: Path | None, model: dict) -> dict:
    """Load `file` into `detector` (built from the plain `model` section) with head surgery, and log and return
    what the run starts from: {"weights", "file", "tensors": counts by module, "parameters",
    "trainable_parameters"}."""
    start = {"weights": model["weights"], "file": None if file is None else str(file), "tensors": None}
    if file is not None:
        state, trained_as = read_state_dict(file)
        built = describe(model)
        start["tensors"] = fit_weights(detector, state, file, built, hint=origin_hint(file, trained_as, built))
        log.info("start: weights %s from %s into %s: %s", model["weights"], file, built, counts_line(start["tensors"]))
    elif model["pretrained"]:
        log.info("start: ImageNet backbone weights (model.pretrained=true), the rest random")
    start |= parameter_counts(detector)
    log.info("%s of %s parameters train (model.freeze: %s; model.trainable_backbone_layers: %s)",
             f"{start['trainable_parameters']:,}", f"{start['parameters']:,}",
             ", ".join(freeze_names(model["freeze"])) or "none", backbone_layers_line(model))
    return start


def backbone_layers_line(model: dict) -> str:
    """The backbone layers that train, as the start line says it: 'null = 3 with trained weights' names the value
    null stands for, and a frozen backbone trains none whatever the key says."""
    if "backbone" in freeze_names(model["freeze"]):
        return "0: model.freeze=backbone"
    layers = trainable_backbone_layers(model["backbone"], start_kind(model), model["trainable_backbone_layers"])
    if model["trainable_backbone_layers"] is not None:
        return str(layers)
    return f"null = {layers} {'from scratch' if start_kind(model) == SCRATCH else 'with trained weights'}"


def describe(model: dict) -> str:
    """'model=A model.backbone=B model.variant=V' of a plain (possibly older, variant-less) `model` section."""
    return (f"model={model.get('arch', '?')} model.backbone={model.get('backbone', '?')} "
            f"model.variant={model.get('variant', 'v1')}")


def origin_hint(file: Path, trained_as: dict | None, built: str) -> str:
    """What the weights in `file` were trained as, where known and other than `built`: a losslab run's model, or
    the detector whose COCO weights torchvision names the file after."""
    if trained_as:
        return f" That run trained {describe(trained_as)}: start with the same model options."
    known = known_coco_file(file.name)
    return f" {file.name} is torchvision's file for {known}." if known and known != built else ""


def start_advice(model: dict, optimizer: dict) -> str | None:
    """A one-line warning for a start known to diverge: RetinaNet from random weights with Adam(W) at an lr above
    RETINANET_SCRATCH_LR; None otherwise (other optimizers are the user's own choice)."""
    if model["arch"] != "retinanet" or start_kind(model) != SCRATCH:
        return None
    if optimizer["_target_"] not in ADAPTIVE or optimizer["lr"] <= RETINANET_SCRATCH_LR:
        return None
    return (f"RetinaNet from random weights at optimizer.lr={optimizer['lr']:g} diverged on real photos (train loss "
            f"up in epoch 2); optimizer.lr={RETINANET_SCRATCH_LR:g} trains stably, or start from trained weights: "
            "model.weights=coco model.backbone=resnet50_fpn (docs/recipes.md)")

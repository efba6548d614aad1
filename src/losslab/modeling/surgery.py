"""Head surgery: trained weights put into a freshly built model (a detector, or a segmentation network). Every
tensor whose name and shape fit is loaded; the class-specific layers are re-initialised when the number of classes
differs; anything else that does not fit means the weights are another architecture's, and nothing is loaded."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from torch import Tensor, nn

from losslab.errors import LosslabError

# A detector's layers whose shape follows the number of classes: they keep their fresh initialisation when it differs.
# (SSD's classification convs, one per feature map: those whose shape differs, SSDlite's last 1x1 of each.)
CLASS_SPECIFIC = ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred.",
                  "roi_heads.mask_predictor.mask_fcn_logits.", "head.classification_head.cls_logits.",
                  "head.classification_head.module_list.")
# Parts one side may have and the other not: a Faster R-CNN's weights start a Mask R-CNN (its mask branch keeps its
# initialisation), a Mask R-CNN's weights start a Faster R-CNN (the mask branch is left unused).
OPTIONAL = ("roi_heads.mask_head.", "roi_heads.mask_predictor.")
# BatchNorm's step counter: FrozenBatchNorm2d has none, BatchNorm2d has one; neither side needs the other's.
IGNORED = ("num_batches_tracked",)
SHOWN_MISFITS = 5


def fit_weights(model: nn.Module, state: dict[str, Tensor], source: Path, built: str, hint: str = "",
                class_specific: tuple[str, ...] = CLASS_SPECIFIC, optional: tuple[str, ...] = OPTIONAL) -> dict:
    """Load `state` (read from `source`) into `model` (described by `built`, e.g. "model=faster_rcnn ..."), with
    head surgery; return the tensor counts by module: {"loaded", "reinitialised", "missing", "unused"}. `hint` ends
    the error when the weights do not fit (what they were trained as, where known).

    `class_specific` and `optional` are tensor-name prefixes: the layers whose shape follows the number of classes,
    and the parts one side may have and the other not (a detector's by default)."""
    own = {key: tensor for key, tensor in model.state_dict().items() if not key.endswith(IGNORED)}
    theirs = {key: tensor for key, tensor in state.items() if not key.endswith(IGNORED)}
    fits = {"loaded": [], "reinitialised": [], "missing": [], "unused": []}
    misfits = []
    for key, tensor in own.items():
        if key not in theirs and key.startswith(optional):
            fits["missing"].append(key)
        elif key not in theirs:
            misfits.append(f"{key} is not in the file")
        elif theirs[key].shape == tensor.shape:
            fits["loaded"].append(key)
        elif key.startswith(class_specific):
            fits["reinitialised"].append(key)
        else:
            misfits.append(f"{key} has shape {list(theirs[key].shape)} there, {list(tensor.shape)} here")
    for key in sorted(theirs.keys() - own.keys()):
        if key.startswith(optional):
            fits["unused"].append(key)
        else:
            misfits.append(f"{key} is not in this model")
    if misfits:
        nothing = " (none of its tensor names is one of this model's)" if not fits["loaded"] else ""
        raise LosslabError(f"the weights in {source} do not fit {built}: {len(misfits)} tensors do not fit"
                           f"{nothing}, first {'; '.join(misfits[:SHOWN_MISFITS])}. The class-specific layers may "
                           f"differ, the rest must be the same architecture, backbone and variant.{hint}")
    model.load_state_dict({**model.state_dict(), **{key: theirs[key] for key in fits["loaded"]}})
    return {kind: by_module(keys) for kind, keys in fits.items()}


def by_module(keys: list[str]) -> dict[str, int]:
    """Tensor counts by module, named by the first two parts of each tensor name (backbone.body, rpn.head, ...)."""
    return dict(sorted(Counter(".".join(key.split(".")[:2]) for key in keys).items()))


def counts_line(counts: dict[str, dict[str, int]]) -> str:
    """'N loaded (module n, ...), N re-initialised (...), N missing, N unused' for the log."""
    parts = []
    for kind, label in (("loaded", "loaded"), ("reinitialised", "re-initialised"), ("missing", "missing"),
                        ("unused", "unused")):
        modules = counts[kind]
        detail = f" ({', '.join(f'{name} {n}' for name, n in modules.items())})" if modules else ""
        parts.append(f"{sum(modules.values())} {label}{detail}")
    return ", ".join(parts)

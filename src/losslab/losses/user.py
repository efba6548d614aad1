"""Users' own losses: `loss/<key>=custom` with `_target_` naming an importable callable (a function, or a class
whose instance is called) and every other key of the section passed to it as a keyword argument.

`user_loss` imports the target and binds its parameters, checking them against its signature; `check_user_loss`
calls the result once on a tiny synthetic batch of the component's shapes. Both raise one LosslabError naming the
component, the target and what is wrong, so a mistake shows before any training. The contract of each component
(what the callable receives and returns) is written once in docs/losses.md ("Your own loss"); the built-in losses
in `functional` follow it.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder

from losslab.errors import LosslabError
from losslab.losses.adapters import LinearBoxCoder
from losslab.losses.catalogue import IGNORE_INDEX, SUMMING_FAMILIES

log = logging.getLogger(__name__)

# config key -> the arguments every call passes positionally, in order (docs/losses.md has their shapes)
INPUTS = {
    "cls": ("logits", "labels"),
    "box": ("pred_deltas", "target_deltas", "anchors", "box_coder"),
    "objectness": ("logits", "labels"),
    "mask": ("mask_logits", "targets"),
    "centerness": ("logits", "targets"),
    "pixel": ("logits", "target"),
}
COMPONENT_NAMES = {"cls": "classification", "box": "box regression", "objectness": "objectness", "mask": "mask",
                   "centerness": "centerness", "pixel": "per-pixel"}
# The box coders of torchvision's heads: R-CNN's box head and SSD encode with these weights, RetinaNet with ones;
# FCOS encodes distances to the box sides (LinearBoxCoder).
BOX_CODER_WEIGHTS = {"rcnn": (10.0, 10.0, 5.0, 5.0), "ssd": (10.0, 10.0, 5.0, 5.0), "retinanet": (1.0, 1.0, 1.0, 1.0)}


class UserLoss:
    """A user's loss in the form its head calls it, for one head family ("rcnn", "retinanet", "fcos", "ssd" or
    "segmenter").

    Floating inputs arrive as float32 and the loss runs outside autocast, so mixed precision cannot overflow a
    hand-written softmax. Empty inputs give a zero on the autograd graph without calling the loss, as the
    built-in losses return. A classification loss that declares `reduction` gets "mean" (R-CNN: over the
    sampled RoIs) or "sum" (RetinaNet, FCOS, SSD: over the anchors, the head divides by the foreground ones); one
    that does not is taken to return the mean, and the sum is that mean times the number of anchors.
    """

    def __init__(self, key: str, target: str, function: Callable[..., Tensor], family: str, takes_reduction: bool,
                 origin: str | None = None):
        self.key, self.target, self.function, self.family = key, target, function, family
        self.origin = origin  # the file it was imported from, for the log
        self.keywords: dict[str, Any] = {}
        self.sums_rows = False
        if key == "cls":
            reduction = "sum" if family in SUMMING_FAMILIES else "mean"
            if takes_reduction:
                self.keywords["reduction"] = reduction
            else:
                self.sums_rows = reduction == "sum"

    def __call__(self, *inputs: Any) -> Tensor:
        first = inputs[0]
        if first.numel() == 0:
            return first.sum() * 0
        inputs = tuple(x.float() if isinstance(x, Tensor) and x.is_floating_point() else x for x in inputs)
        if isinstance(self.function, nn.Module):  # its buffers (class weights, ...) follow the inputs
            self.function.to(first.device)
        with torch.autocast(first.device.type, enabled=False):
            loss = self.function(*inputs, **self.keywords)
        return loss * first.shape[0] if self.sums_rows else loss

    def __repr__(self) -> str:
        return f"UserLoss(loss.{self.key}._target_={self.target})"


def user_loss(key: str, family: str, spec: dict) -> UserLoss:
    """The loss a `loss.<key>` section with name `custom` describes ({"_target_": "mod.fn", **parameters}),
    imported and bound for the head `family`; a LosslabError when it cannot be."""
    spec = {name: value for name, value in spec.items() if name != "name"}
    target = str(spec.pop("_target_", ""))
    found = import_target(key, target)
    takes_reduction = False
    if inspect.isclass(found):
        _check_arguments(key, target, found, (), spec, f"{target}(...)")
        try:
            function = found(**spec)
        except Exception as error:
            raise UserLossError(key, target, f"creating {found.__name__}(**{spec}) raised "
                                             f"{type(error).__name__}: {error}") from error
        if not callable(function):
            raise UserLossError(key, target, f"{found.__name__} instances are not callable; a loss class needs a "
                                             "__call__ (or, for a torch.nn.Module, a forward) taking "
                                             f"({', '.join(INPUTS[key])})")
        call = function.forward if isinstance(function, nn.Module) else function
        takes_reduction = _check_arguments(key, target, call, INPUTS[key], {}, f"calling a {found.__name__}")
    elif callable(found):
        takes_reduction = _check_arguments(key, target, found, INPUTS[key], spec, target)
        function = partial(found, **spec)
    else:
        raise UserLossError(key, target, f"names an object of type {type(found).__name__}, not a function or class")
    return UserLoss(key, target, function, family, takes_reduction, _source_file(found))


class UserLossError(LosslabError):
    """A user loss that cannot be imported, bound or called as its component's contract says."""

    def __init__(self, key: str, target: str, problem: str):
        super().__init__(f"loss.{key}._target_={target or '(unset)'} ({COMPONENT_NAMES[key]} loss): {problem}. "
                         f"See docs/losses.md, \"Your own loss\", for what a {COMPONENT_NAMES[key]} loss receives "
                         "and returns.")


def import_target(key: str, target: str) -> Any:
    """The object `target` ("package.module.name") names, importable from the working folder as for a script.

    Python's standard library is refused before anything is imported: a loss lives in the user's module (or a
    library's), and a run folder's stored config must not be able to name, say, subprocess.Popen.
    """
    module_name, _, name = target.rpartition(".")
    if not module_name or not name:
        raise UserLossError(key, target, "expected MODULE.NAME, a function or class of an importable module "
                                         "(e.g. myloss.poly1_ce for poly1_ce in ./myloss.py)")
    top_level = module_name.split(".")[0]
    if top_level in sys.stdlib_module_names:
        raise UserLossError(key, target, f"{module_name} is part of Python's standard library; a loss is a function "
                                         "or class of your own module (or of a library such as torch)")
    working_folder_importable()
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserLossError(key, target, f"could not import {module_name} ({error}); the working folder "
                                         f"{os.getcwd()} and the installed packages were searched") from error
    except Exception as error:
        raise UserLossError(key, target, f"importing {module_name} raised {type(error).__name__}: {error}") from error
    if not hasattr(module, name):
        raise UserLossError(key, target, f"could not import it: module {module_name} ({module.__file__}) has no "
                                         f"attribute {name!r}")
    return getattr(module, name)


def working_folder_importable() -> None:
    """Put the working folder first on the module search path, as `python -m` and `python script.py` do, so that
    ./myloss.py imports the same way under the `train` console script, sweep jobs, launcher workers, torchrun's
    processes and a resume."""
    here = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == here for entry in sys.path):
        sys.path.insert(0, here)


def _check_arguments(key: str, target: str, function: Callable, inputs: tuple[str, ...], params: dict,
                     where: str) -> bool:
    """Whether `function` takes `reduction` (classification only); a UserLossError when it cannot be called with
    the component's `inputs` positionally and `params` as keywords."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # some builtins have none: the synthetic call checks them
        return False
    parameters = signature.parameters
    takes_reduction = key == "cls" and "reduction" in parameters
    if "reduction" in params and key == "cls":
        raise UserLossError(key, target, "reduction is not a parameter to set: losslab passes reduction='mean' "
                                         "(R-CNN) or 'sum' (RetinaNet) to a classification loss that declares it")
    open_keywords = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    positional = [name for name, p in parameters.items()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:len(inputs)]
    taken = sorted(set(params) & set(positional))
    if taken:
        raise UserLossError(key, target, f"parameter {', '.join(map(repr, taken))} is where {where} receives "
                                         f"{', '.join(inputs)}; losslab passes those itself")
    settable = [name for name, p in parameters.items() if name not in positional and name != "reduction"
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [name for name in params if name not in parameters and not open_keywords]
    if unknown:
        raise UserLossError(key, target, f"unknown parameter {', '.join(map(repr, unknown))}: {where} takes "
                                         f"{', '.join(settable) or 'no parameters'}")
    placeholders = list(inputs)
    extra = {"reduction": "mean"} if takes_reduction else {}
    try:
        signature.bind(*placeholders, **params, **extra)
    except TypeError as error:
        missing = [name for name, p in parameters.items() if p.default is p.empty and name not in params
                   and name not in positional and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if missing:
            raise UserLossError(key, target, f"{where} needs parameter {', '.join(map(repr, missing))}; set it with "
                                             f"+loss.{key}.{missing[0]}=VALUE") from error
        raise UserLossError(key, target, f"{where} cannot be called as ({', '.join(inputs)}"
                                         f"{', **parameters' if params else ''}): {error}") from error
    return takes_reduction


def check_user_loss(loss: UserLoss, num_classes: int, device: torch.device) -> None:
    """Call `loss` on a tiny synthetic batch of its component's shapes on `device`: it must return a finite scalar
    whose gradient reaches its first input and is finite. The random streams of the run are left as they were."""
    inputs = synthetic_batch(loss.key, loss.family, num_classes, device)
    shapes = ", ".join(f"{name} {_shape(x)}" for name, x in zip(INPUTS[loss.key], inputs, strict=True))
    fail = partial(UserLossError, loss.key, loss.target)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        try:
            result = loss(*inputs)
        except Exception as error:
            raise fail(f"calling it on a synthetic batch ({shapes}) raised {type(error).__name__}: {error}") from error
    if not isinstance(result, Tensor):
        raise fail(f"returned a {type(result).__name__} instead of a scalar tensor on a synthetic batch ({shapes})")
    if result.dim() != 0:
        raise fail(f"returned shape {_shape(result)} instead of a scalar (shape []) on a synthetic batch ({shapes}); "
                   "reduce it as the contract says (mean or sum)")
    if not torch.isfinite(result):
        raise fail(f"returned {result.item()} on a synthetic batch ({shapes})")
    if not result.requires_grad:
        raise fail(f"returned a tensor without gradient on a synthetic batch ({shapes}): it must be computed from "
                   f"{INPUTS[loss.key][0]} with torch operations (no .item(), .detach(), numpy or torch.no_grad())")
    (gradient,) = torch.autograd.grad(result, inputs[0], allow_unused=True)
    if gradient is None:
        raise fail(f"its result does not depend on {INPUTS[loss.key][0]} (no gradient reaches it)")
    if not torch.isfinite(gradient).all():
        raise fail(f"its gradient with respect to {INPUTS[loss.key][0]} has NaN or infinite values on a synthetic "
                   f"batch ({shapes})")


def synthetic_batch(key: str, family: str, num_classes: int, device: torch.device) -> tuple:
    """Inputs of the shapes, dtypes and ranges the `key` component's head passes (docs/losses.md), from a fixed
    seed: the first input requires grad."""
    generator = torch.Generator().manual_seed(0)

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator)

    if key in ("cls", "objectness", "centerness"):
        rows = 8
        if key == "cls":
            logits = uniform(rows, num_classes + 1) * 4 - 2
            labels = torch.randint(1, num_classes + 1, (rows,), generator=generator)
            labels[: rows // 2] = 0  # background rows and object rows, as the samplers pick them
        elif key == "centerness":  # FCOS: soft targets in [0, 1] of foreground locations
            logits = uniform(rows) * 4 - 2
            labels = uniform(rows)
        else:
            logits = uniform(rows) * 4 - 2
            labels = (torch.arange(rows) % 2).float()
        return logits.to(device).requires_grad_(), labels.to(device)
    if key == "pixel":  # task=segmentation: [B, C, H, W] logits, [B, H, W] class indices, 255 ignored
        logits = uniform(2, num_classes, 8, 8) * 4 - 2
        target = torch.randint(0, num_classes, (2, 8, 8), generator=generator)
        target[:, 0] = IGNORE_INDEX
        return logits.to(device).requires_grad_(), target.to(device)
    if key == "mask":
        size = 28  # torchvision's mask head: 28 x 28 logits per positive proposal
        logits = uniform(3, size, size) * 4 - 2
        targets = (uniform(3, size, size) > 0.5).float()
        return logits.to(device).requires_grad_(), targets.to(device)
    boxes = 4
    top_left = uniform(boxes, 2) * 32
    anchors = torch.cat([top_left, top_left + 8 + uniform(boxes, 2) * 24], dim=1)
    targets = anchors + uniform(boxes, 4) * 4 - 2
    box_coder = LinearBoxCoder() if family == "fcos" else BoxCoder(BOX_CODER_WEIGHTS[family])
    target_deltas = box_coder.encode_single(targets, anchors)
    pred_deltas = target_deltas + uniform(boxes, 4) * 0.2 - 0.1
    return (pred_deltas.to(device).requires_grad_(), target_deltas.to(device), anchors.to(device), box_coder)


def _source_file(found: Any) -> str | None:
    try:
        return inspect.getsourcefile(found)
    except TypeError:  # built-in functions and classes have none
        return None


def _shape(value: Tensor | Any) -> str:
    return f"[{', '.join(map(str, value.shape))}]" if isinstance(value, Tensor) else type(value).__name__

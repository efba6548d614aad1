"""segmentation_models_pytorch's architectures (U-Net to Segformer) from plain values: one builder for all of them,
the `model` section read as smp's own keyword arguments.

`model=NAME` picks smp's class (ARCHS); `model.encoder` is smp's `encoder_name` (one of smp's encoders, or `tu-NAME`
for any timm model); `model.encoder_depth` its `encoder_depth` (null: the class's own default); `model.options` any
other keyword argument of the class (decoder_channels, decoder_attention_type, encoder_output_stride, upsampling,
...), named and valued as smp's signature has them. losslab sets the rest (SET_BY_LOSSLAB): the run's class count,
random encoder weights (model.weights=imagenet is loaded from the local cache by losslab.modeling.smp_weights, so
smp never downloads), three input channels, no activation (losslab's losses take logits) and no `aux_params` (smp's
image-classification head, which no component's loss would train).
"""

from __future__ import annotations

import inspect
import warnings
from difflib import get_close_matches

import segmentation_models_pytorch as smp
import timm
import torch
from segmentation_models_pytorch.encoders import get_encoder_names
from torch import Tensor, nn

# model.arch -> smp's class. smp's DeepLabV3 is `smp_deeplabv3`: `deeplabv3` is torchvision's (its COCO_VOC
# weights, its auxiliary head), and runs made before smp's architectures came keep meaning what they trained.
ARCHS = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "manet": "MAnet",
    "linknet": "Linknet",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "smp_deeplabv3": "DeepLabV3",
    "deeplabv3plus": "DeepLabV3Plus",
    "pan": "PAN",
    "upernet": "UPerNet",
    "segformer": "Segformer",
}
SET_BY_LOSSLAB = ("encoder_name", "encoder_depth", "encoder_weights", "in_channels", "classes", "activation",
                  "aux_params", "kwargs")
# PAN's Feature Pyramid Attention max-pools the deepest features three more times (x8): each padded side must
# still leave it one pixel, on top of the encoder's output stride that every smp model checks.
EXTRA_DOWNSAMPLING = {"pan": 8}
CHECKED_SIZE = 256  # the square image a config's network is tried on (meta tensors: no memory, no arithmetic)


class SmpNetwork(nn.Module):
    """An smp model called as losslab's segmenters call torchvision's: a padded batch [B, 3, H, W] (each side a
    multiple of `input_multiple`) in, {"out": logits [B, classes, H, W]} out."""

    __jit_unused_properties__ = ["backbone"]  # a module, not something TorchScript returns

    def __init__(self, model: nn.Module, input_multiple: int):
        super().__init__()
        self.model = model
        self.input_multiple = input_multiple

    @property
    def backbone(self) -> nn.Module:
        """The encoder (trainer.compile compiles it in place)."""
        return self.model.encoder

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return {"out": self.model(images)}


def smp_class(arch: str) -> type[nn.Module]:
    return getattr(smp, ARCHS[arch])


def smp_arguments(model: dict, num_classes: int, timm_file: str | None = None) -> dict:
    """smp's keyword arguments for a plain `model` section ({"arch", "encoder", "encoder_depth", "options"});
    `timm_file`: a tu- encoder's pretrained weights, loaded by timm from that file (never from the hub)."""
    depth = {} if model["encoder_depth"] is None else {"encoder_depth": model["encoder_depth"]}
    weights = {"encoder_weights": None} if timm_file is None else \
        {"encoder_weights": True, "pretrained_cfg_overlay": {"file": timm_file}}
    return {"encoder_name": model["encoder"], "classes": num_classes, "activation": None, **weights, **depth,
            **model["options"]}


def create_smp_network(model: dict, num_classes: int, timm_file: str | None = None) -> SmpNetwork:
    """smp's `model.arch` for `num_classes` pixel classes (background included), with random weights (a tu-
    encoder: timm's pretrained ones from `timm_file`, see smp_weights)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # smp's `timm-` encoder names (it maps them to tu-)
        network = smp_class(model["arch"])(**smp_arguments(model, num_classes, timm_file))
    return SmpNetwork(network, network.encoder.output_stride * EXTRA_DOWNSAMPLING.get(model["arch"], 1))


def smp_problems(model: dict) -> list[str]:
    """What is wrong with the smp keys of a plain `model` section, as messages naming the keys: the encoder's name,
    the options' names (against smp's signature), then whatever smp itself refuses when the network is built and
    run on a meta tensor (a depth its decoder cannot take, decoder_channels of another length, ...)."""
    problems = encoder_problems(model["encoder"]) + option_problems(model["arch"], model["options"])
    if model["backbone"] != model["encoder"]:
        problems.append(f"model.backbone={model['backbone']}: smp's models take their encoder as model.encoder "
                        f"(now {model['encoder']}), which model.backbone follows; set model.encoder instead")
    depth = model["encoder_depth"]
    if depth is not None and not 1 <= depth <= 5:
        problems.append(f"model.encoder_depth={depth}: expected 1 to 5 encoder stages (smp's encoders have 5), or "
                        "null for the architecture's default")
    if problems:
        return problems
    try:
        with torch.device("meta"):
            network = create_smp_network(model, num_classes=2).eval()  # eval: BatchNorm over pooled 1x1 maps
            size = max(CHECKED_SIZE, network.input_multiple)
            try:
                network(torch.empty(1, 3, size, size))
            except (RuntimeError, NotImplementedError) as error:
                if "meta" not in str(error).lower():
                    raise
                # Code that reads tensor values (mit_b*'s .item()) cannot run on meta tensors: it built, that is all
                # this check can tell.
    except Exception as error:  # smp and timm raise ValueError, KeyError, AssertionError, RuntimeError, ...
        given = ", ".join(f"model.{key}={model[key]}" for key in ("encoder", "encoder_depth", "options"))
        return [f"model={model['arch']} ({given}): segmentation_models_pytorch's {ARCHS[model['arch']]} refuses "
                f"them: {str(error).strip().rstrip('.') or type(error).__name__}"]
    return []


def encoder_problems(encoder: str) -> list[str]:
    if encoder.startswith("tu-"):
        if timm.is_model(encoder[3:]):
            return []
        close = get_close_matches(encoder[3:], timm.list_models(), n=5)
        return [f"model.encoder={encoder}: timm has no model {encoder[3:]}; expected tu-NAME with NAME one of "
                f"timm.list_models(){hint(close, 'tu-')}"]
    if encoder in get_encoder_names():
        return []
    close = get_close_matches(encoder, get_encoder_names(), n=5)
    return [f"model.encoder={encoder}: expected one of segmentation_models_pytorch's encoders (resnet18, resnet34, "
            f"resnet50, efficientnet-b0 to b7, mobilenet_v2, mit_b0 to b5, ...: "
            f"segmentation_models_pytorch.encoders.get_encoder_names()) or tu-NAME, any timm model "
            f"(e.g. tu-fbnetv3_b){hint(close)}"]


def option_problems(arch: str, options: dict) -> list[str]:
    """Options that smp's class does not take, or that losslab sets itself."""
    accepted = [name for name in inspect.signature(smp_class(arch)).parameters
                if name not in ("self", *SET_BY_LOSSLAB)]
    problems = []
    for name in options:
        if name in SET_BY_LOSSLAB:
            problems.append(f"model.options.{name}: losslab sets it (model.encoder, model.encoder_depth, "
                            "model.weights and the data's class count say what it is)")
        elif name not in accepted:
            problems.append(f"model.options.{name}: segmentation_models_pytorch's {ARCHS[arch]} (model={arch}) "
                            f"takes {', '.join(accepted)}")
    return problems


def hint(close: list[str], prefix: str = "") -> str:
    return f"; did you mean {' or '.join(prefix + name for name in close)}?" if close else ""

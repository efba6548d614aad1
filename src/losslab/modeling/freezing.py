"""`model.freeze`: named parts of a detector that do not train, and how many parameters (and BatchNorm layers) do."""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

# model.freeze names -> the module of a torchvision detector they freeze (BackboneWithFPN: body + fpn; an SSD's
# feature extractor: the VGG16 or MobileNetV3 trunk, `features`, and SSD's extra layers).
FREEZABLE = {"backbone": "backbone.body", "fpn": "backbone.fpn", "rpn": "rpn"}
SSD_FREEZABLE = {"backbone": "backbone.features"}


def freeze_names(freeze: str | list[str] | None) -> list:
    """model.freeze as a list of names: it may be one name (`model.freeze=backbone`) or a list."""
    if isinstance(freeze, list | tuple):
        return list(freeze)
    return [] if freeze is None else [freeze]


def freeze(model: nn.Module, parts: list[str]) -> None:
    """Stop the named parts from training: their parameters get no gradient and their BatchNorm layers become
    FrozenBatchNorm2d, so that no running statistics move either (train mode would update them)."""
    paths = FREEZABLE if hasattr(model.backbone, "body") else SSD_FREEZABLE
    for part in parts:
        module = model.get_submodule(paths[part])
        module.requires_grad_(False)
        freeze_batch_norm(module)


def freeze_batch_norm(module: nn.Module) -> None:
    """Replace every BatchNorm2d below `module` by a FrozenBatchNorm2d holding the same statistics and affine."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.load_state_dict(child.state_dict())  # FrozenBatchNorm2d drops num_batches_tracked
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """{"parameters": all of them, "trainable_parameters": those the optimizer updates, "batch_norm_layers": the
    BatchNorm layers whose running statistics move in train mode (FrozenBatchNorm2d's never do), whatever their
    parameters' gradients: the layers that make train and validation losses differ (reporting/diagnosis.py)}."""
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "batch_norm_layers": sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())}

"""losslab: configurable training experiments for torchvision detectors."""

from losslab.config import compose_config
from losslab.engine import train_one_epoch, validation_loss
from losslab.models import build_model
from losslab.train import RunResult, build_dataloaders, run

__all__ = ["RunResult", "build_dataloaders", "build_model", "compose_config", "run", "train_one_epoch",
           "validation_loss"]

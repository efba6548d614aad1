"""Datasets (synthetic shapes, COCO, VOC, semantic masks), safe image reading, splits, augmentations and loaders,
in torchvision's detection convention. Imports losslab's errors and distributed, and the loss catalogue's plain
constants (the void label IGNORE_INDEX) only."""

"""Datasets (synthetic shapes, COCO, VOC), safe image reading, splits, augmentations and loaders, in
torchvision's detection convention. Imports losslab's errors and distributed only."""

"""Evaluation and inference: COCO metrics (pycocotools), segmentation metrics, prediction over a loader, Mask
R-CNN's masks. Takes models and loaders, never a config. Imports data, losses and modeling; never config or
losslab.training."""

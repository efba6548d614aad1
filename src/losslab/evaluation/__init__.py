"""Evaluation and inference: COCO metrics (pycocotools), segmentation metrics, prediction over a loader, Mask
R-CNN's masks, what each task's export saves (exporting) and its check against PyTorch (export_check). Takes models
and loaders, never a config. Imports data, losses and modeling; never config or losslab.training."""

"""Evaluation and inference: COCO metrics (pycocotools), prediction over a loader, and a finished run's model
loaded for inference. Imports config, data, losses and modeling; never losslab.training."""

"""Detection metrics through pycocotools (COCOeval), never a hand-written AP: COCO-format ground truth and results from
torchvision-style targets and predictions, box and mask mAP, precision/recall/F1 at a score threshold, and a confusion
matrix."""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_iou

from losslab.evaluation.masks import MASK_THRESHOLD, mask_rles

IOU_TYPES = ("bbox", "segm")
# COCOeval's twelve summary numbers (its `stats`, in order) as losslab names them: AP over IoU 0.50:0.95, at 0.50 and
# 0.75, over small (< 32² px), medium and large (> 96² px) objects; AR with at most 1, 10 and 100 detections per
# image and over small, medium and large objects (100 detections). Masks prefix them with "mask_".
COCO_SUMMARY = ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
                "mAR1", "mAR10", "mAR100", "mAR_small", "mAR_medium", "mAR_large")
# eval.backend -> the module holding its COCO and COCOeval classes, imported when first used. Both compute the
# same numbers (tests compare them); faster_coco_eval's C++ evaluation is much faster on large validation sets.
BACKENDS = {"pycocotools": ("pycocotools.coco", "pycocotools.cocoeval", "COCOeval"),
            "faster_coco_eval": ("faster_coco_eval", "faster_coco_eval", "COCOeval_faster")}


def coco_classes(backend: str) -> tuple[type, type]:
    """The COCO and COCOeval classes of an eval.backend."""
    import importlib

    coco_module, eval_module, eval_class = BACKENDS[backend]
    return importlib.import_module(coco_module).COCO, getattr(importlib.import_module(eval_module), eval_class)


def _boxes(d: dict) -> torch.Tensor:
    """Boxes as a float [N, 4] tensor (an empty tensor may come as shape [0])."""
    return torch.as_tensor(d["boxes"], dtype=torch.float32).reshape(-1, 4)


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    """XYXY pixels -> COCO [x, y, w, h] as plain Python floats."""
    xywh = boxes.clone()
    xywh[:, 2:] -= xywh[:, :2]
    return [[float(v) for v in row] for row in xywh.tolist()]


def _rle(binary: np.ndarray) -> dict:
    """RLE of one [H, W] binary mask, with counts as str so the result is JSON-serialisable."""
    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_image_ids(targets: list[dict]) -> list[int]:
    """The COCO id of each target's image: its `image_id` when every one is an integer (COCO, shapes),
    else its position (VOC's ids are file names, which COCO's integer ids cannot hold)."""
    ids = [target.get("image_id", index) for index, target in enumerate(targets)]
    if all(_is_integer(i) for i in ids):
        return [int(i) for i in ids]
    return list(range(len(targets)))


def _is_integer(image_id) -> bool:
    return isinstance(image_id, int) or (torch.is_tensor(image_id) and image_id.numel() == 1
                                         and not image_id.is_floating_point())


def coco_ground_truth(targets: list[dict], image_sizes: list[tuple[int, int]], classes: Sequence[str],
                      with_masks: bool = False, category_ids: Sequence[int] | None = None) -> dict:
    """COCO instances dict from torchvision targets; `image_sizes` are (height, width).

    Label k becomes category `category_ids[k - 1]` (the dataset's own ids), or k when they are not
    given. An object's "area" (COCOeval sorts objects into small, medium and large by it) is its target's "area"
    where given and not NaN (the annotation file's own), else its mask's pixels, else its box's. Image ids are those
    of coco_image_ids; an image's "file_name" is its target's (what the annotations call
    it), else its own id where that is not an integer. Images without objects are still listed.
    """
    if len(targets) != len(image_sizes):
        raise ValueError(f"{len(targets)} targets but {len(image_sizes)} image sizes")
    category_of = _category_map(classes, category_ids)
    images, annotations = [], []
    for target, image_id, (height, width) in zip(targets, coco_image_ids(targets), image_sizes, strict=True):
        image = {"id": image_id, "height": int(height), "width": int(width)}
        if "file_name" in target or not _is_integer(target.get("image_id", image_id)):
            image["file_name"] = str(target.get("file_name", target.get("image_id")))
        images.append(image)
        boxes = _boxes(target)
        labels = torch.as_tensor(target["labels"]).reshape(-1).tolist()
        masks = None
        if with_masks:
            masks = torch.as_tensor(target["masks"]).reshape(-1, int(height), int(width)).cpu().numpy() > 0
        given_areas = torch.as_tensor(target.get("area", torch.full((len(labels),), math.nan))).reshape(-1).tolist()
        for j, (bbox, label, given_area) in enumerate(zip(_xywh(boxes), labels, given_areas, strict=True)):
            ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": category_of[int(label)],
                   "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}
            if masks is not None:
                ann["segmentation"] = _rle(masks[j])
                ann["area"] = float(masks[j].sum())
            if not math.isnan(given_area):
                ann["area"] = float(given_area)  # the file's own (COCO: a polygon's), which COCOeval's ranges read
            annotations.append(ann)
    categories = [{"id": category_of[k], "name": str(name)} for k, name in enumerate(classes, start=1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _category_map(classes: Sequence[str], category_ids: Sequence[int] | None) -> dict[int, int]:
    """label -> COCO category id."""
    ids = list(category_ids) if category_ids is not None else list(range(1, len(classes) + 1))
    if len(ids) != len(classes):
        raise ValueError(f"{len(ids)} category ids for {len(classes)} classes")
    return {label: int(category_id) for label, category_id in enumerate(ids, start=1)}


def coco_results(predictions: list[dict], image_ids: list[int], with_masks: bool = False,
                 category_ids: Sequence[int] | None = None,
                 image_sizes: list[tuple[int, int]] | None = None) -> list[dict]:
    """COCO results list (one dict per detection) from torchvision predictions; mask probabilities cut at 0.5.
    Label k is reported as category `category_ids[k - 1]` when they are given.

    Masks come as torchvision's full-size probabilities ("masks" [N, 1, H, W]) or as each box's probability map
    ("mask_crops" [N, M, M], see losslab.evaluation.masks), which needs the images' (height, width) `image_sizes`.
    """
    category_of = None if category_ids is None else {k: int(c) for k, c in enumerate(category_ids, start=1)}
    if len(predictions) != len(image_ids):
        raise ValueError(f"{len(predictions)} predictions but {len(image_ids)} image ids")
    results = []
    for index, (prediction, image_id) in enumerate(zip(predictions, image_ids, strict=True)):
        boxes = _boxes(prediction).detach().cpu()
        scores = torch.as_tensor(prediction["scores"]).reshape(-1).tolist()
        labels = torch.as_tensor(prediction["labels"]).reshape(-1).tolist()
        rles = _mask_rles(prediction, boxes, image_sizes[index] if image_sizes else None) if with_masks else None
        for j, (bbox, score, label) in enumerate(zip(_xywh(boxes), scores, labels, strict=True)):
            category_id = int(label) if category_of is None else category_of[int(label)]
            result = {"image_id": int(image_id), "category_id": category_id, "bbox": bbox, "score": float(score)}
            if rles is not None:
                result["segmentation"] = rles[j]
            results.append(result)
    return results


def _mask_rles(prediction: dict, boxes: torch.Tensor, size: tuple[int, int] | None) -> list[dict]:
    """The RLE of each detection's mask (probability > 0.5), from full-size masks or from box crops."""
    if "mask_crops" in prediction:
        if size is None:
            raise ValueError("predictions with mask_crops need the image sizes")
        return mask_rles(torch.as_tensor(prediction["mask_crops"]).cpu(), boxes, *size)
    probs = torch.as_tensor(prediction["masks"]).detach().cpu()
    if not len(probs):
        return []
    return [_rle(mask) for mask in (probs.reshape(len(probs), *probs.shape[-2:]) > MASK_THRESHOLD).numpy()]


def _summary_keys(prefix: str) -> list[str]:
    return [f"{prefix}{name}" for name in COCO_SUMMARY]


def coco_metrics(ground_truth: dict, results: list[dict], iou_type: str = "bbox", prefix: str = "",
                 with_pr: bool = False, backend: str = "pycocotools") -> dict:
    """COCOeval's twelve summary numbers (COCO_SUMMARY: mAP, mAP50, ..., mAR_large) and per-class AP@[.5:.95]
    ("AP/<name>") for `iou_type` "bbox" or "segm", computed by `backend` (a key of BACKENDS). A number COCOeval
    cannot measure (-1: no ground truth, or none of that size) is 0.

    Classes without ground truth are left out of the per-class APs. With `with_pr`, key "pr" holds
    {class name: (recall thresholds, precision at IoU 0.5, area all, maxDets 100)} for classes with ground truth.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    with_gt = sorted({a["category_id"] for a in ground_truth["annotations"] if not a.get("iscrowd", 0)})
    if not results:
        # pycocotools' loadRes indexes results[0]; no detections means every AP and AR is zero.
        metrics: dict = dict.fromkeys(_summary_keys(prefix), 0.0)
        metrics.update({f"{prefix}AP/{names[k]}": 0.0 for k in with_gt if k in names})
        if with_pr:
            rec = np.linspace(0.0, 1.00, 101).tolist()
            metrics["pr"] = {names[k]: (rec, [0.0] * len(rec)) for k in with_gt if k in names}
        return metrics

    results = copy.deepcopy(results)  # loadRes writes ids, areas and polygons into the dicts it gets
    if iou_type == "segm":
        # Without a bbox, loadRes takes the area (used for COCO's area ranges) from the mask rather than the box.
        for r in results:
            r.pop("bbox", None)
    COCO, COCOeval = coco_classes(backend)  # noqa: N806 (the libraries' class names)
    with contextlib.redirect_stdout(io.StringIO()):  # COCO, loadRes and COCOeval print progress
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(ground_truth)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    # COCOeval reports -1 where there is nothing to measure (no ground truth at all).
    stats = [max(float(value), 0.0) for value in evaluator.stats]
    metrics = dict(zip(_summary_keys(prefix), stats, strict=True))
    precision = evaluator.eval["precision"]  # [IoU thresholds, recall thresholds, classes, areas, maxDets]
    pr = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        valid = values[values > -1]
        ap = float(valid.mean()) if valid.size else math.nan
        if math.isnan(ap):  # no ground truth for this class: AP undefined
            continue
        name = names[cat_id]
        metrics[f"{prefix}AP/{name}"] = ap
        recall_thresholds = [float(r) for r in evaluator.params.recThrs]
        pr[name] = (recall_thresholds, [max(float(p), 0.0) for p in precision[0, :, k, 0, -1]])
    if with_pr:
        metrics["pr"] = pr
    return metrics


def match_detections(prediction: dict, target: dict, score_threshold: float,
                     iou_threshold: float = 0.5) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Greedy class-agnostic matching, highest score first, of predictions with score >= `score_threshold`.

    Each prediction takes the still-free ground-truth box of highest IoU >= `iou_threshold`. Returns
    (matched (pred index, gt index) pairs, unmatched prediction indices, unmatched gt indices); predictions below
    the threshold appear in neither list.
    """
    pred_boxes, gt_boxes = _boxes(prediction), _boxes(target)
    scores = torch.as_tensor(prediction["scores"], dtype=torch.float32).reshape(-1)
    kept = torch.nonzero(scores >= score_threshold).flatten()
    order = kept[torch.sort(scores[kept], descending=True, stable=True).indices].tolist()
    iou = box_iou(pred_boxes, gt_boxes) if len(pred_boxes) and len(gt_boxes) else None
    free = set(range(len(gt_boxes)))
    matched, unmatched_pred = [], []
    for p in order:
        best, best_iou = -1, -1.0
        if iou is not None:
            for g in sorted(free):  # sorted: ties go to the lower gt index, deterministically
                value = float(iou[p, g])
                if value >= iou_threshold and value > best_iou:
                    best, best_iou = g, value
        if best < 0:
            unmatched_pred.append(p)
        else:
            matched.append((p, best))
            free.discard(best)
    return matched, unmatched_pred, sorted(free)


def precision_recall_f1(predictions: list[dict], targets: list[dict], score_threshold: float,
                        iou_threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall and F1 at a score threshold; a true positive is a matched pair with the same label."""
    tp = n_pred = n_gt = 0
    for prediction, target in zip(predictions, targets, strict=True):
        matched, unmatched_pred, unmatched_gt = match_detections(prediction, target, score_threshold, iou_threshold)
        pred_labels = torch.as_tensor(prediction["labels"]).reshape(-1).tolist()
        gt_labels = torch.as_tensor(target["labels"]).reshape(-1).tolist()
        tp += sum(pred_labels[p] == gt_labels[g] for p, g in matched)
        n_pred += len(matched) + len(unmatched_pred)
        n_gt += len(gt_labels)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gt if n_gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "F1": float(f1)}


def confusion_matrix(predictions: list[dict], targets: list[dict], num_classes: int, score_threshold: float,
                     iou_threshold: float = 0.5) -> np.ndarray:
    """(K+1, K+1) int64 counts, rows = true class, columns = predicted class, index 0 = background."""
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for prediction, target in zip(predictions, targets, strict=True):
        matched, unmatched_pred, unmatched_gt = match_detections(prediction, target, score_threshold, iou_threshold)
        pred_labels = torch.as_tensor(prediction["labels"]).reshape(-1).tolist()
        gt_labels = torch.as_tensor(target["labels"]).reshape(-1).tolist()
        for p, g in matched:
            matrix[gt_labels[g], pred_labels[p]] += 1
        for p in unmatched_pred:
            matrix[0, pred_labels[p]] += 1
        for g in unmatched_gt:
            matrix[gt_labels[g], 0] += 1
    return matrix


def score_detections(predictions: list[dict], targets: list[dict], image_sizes: list[tuple[int, int]],
                     classes: Sequence[str], score_threshold: float, with_pr: bool = False,
                     category_ids: Sequence[int] | None = None,
                     backend: str = "pycocotools") -> tuple[dict, dict, list[dict]]:
    """Box metrics, mask metrics (`mask_` prefix) when the predictions have masks, and precision,
    recall and F1 at `score_threshold`; with the COCO ground truth and results they were computed on,
    in the dataset's own category ids when `category_ids` gives them. `backend` computes the COCO metrics."""
    with_masks = any("masks" in p or "mask_crops" in p for p in predictions)
    ground_truth = coco_ground_truth(targets, image_sizes, classes, with_masks=with_masks, category_ids=category_ids)
    results = coco_results(predictions, coco_image_ids(targets), with_masks=with_masks, category_ids=category_ids,
                           image_sizes=image_sizes)
    metrics = coco_metrics(ground_truth, results, "bbox", with_pr=with_pr, backend=backend)
    if with_masks:
        metrics |= coco_metrics(ground_truth, results, "segm", prefix="mask_", backend=backend)
    metrics |= precision_recall_f1(predictions, targets, score_threshold)
    return metrics, ground_truth, results

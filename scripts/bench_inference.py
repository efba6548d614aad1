"""What `losslab predict` and `losslab evaluate` cost on full-size photos beyond the model's forward pass.

    python scripts/bench_inference.py [--run RUN_DIR] [--images 4] [--size 800x600] [--repeats 3]

Without --run it first trains small runs (Faster R-CNN and Mask R-CNN, 2 epochs on the built-in data at 128 px,
as the photos of a real user would meet such a model). It writes synthetic photos (the built-in shapes drawn at
the photo's height on a grey canvas, JPEG) with a COCO annotation file, then, in interleaved repetitions:

- the whole command on the photos: `predict_images` (decoding, forward, mask placing, drawing, PNG and JSON
  writing) and `evaluate_run` on a copy of the run whose data are those photos (forward, RLE encoding,
  COCOeval, PR curves, confusion matrix, JSON exports);
- the start-up alone: loading the run and building its model;
- the forward alone: `detect_each()` on the decoded photos, one image per forward as the commands run them.

Reported per image (medians): forward, outside the forward = (command - start-up - forward) / images, their ratio
(target <= 0.5), and the start-up (target < 3 s). Absolute times move with the machine's load; the ratio of
parts measured in the same repetition is what to compare.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from pycocotools import mask as mask_utils

from losslab import compose_config, run
from losslab.commands.evaluate import evaluate_run
from losslab.commands.predict import predict_images
from losslab.commands.saved_model import load_saved_model
from losslab.data.images import decode_pixels
from losslab.data.shapes import ShapesDataset
from losslab.evaluation.inference import detect_each
from losslab.modeling.heads import scores_at_least


def train_small_run(arch: str, folder: Path) -> Path:
    overrides = [f"model={arch}", "trainer.max_epochs=2", "data.num_images=24", "eval.every=0",
                 "trainer.progress=false", "trainer.device=cpu", f"run_dir={folder / arch}"]
    return run(compose_config(overrides)).run_dir


def write_photos(folder: Path, count: int, width: int, height: int) -> Path:
    """`count` JPEG photos of shapes and their COCO instances file (RLE masks); returns the annotation file."""
    shapes = ShapesDataset(num_images=count, image_size=height, min_objects=2, max_objects=5, seed=3)
    left = (width - height) // 2
    coco = {"images": [], "annotations": [], "categories": [{"id": k, "name": name}
                                                            for k, name in enumerate(shapes.classes, start=1)]}
    for index in range(count):
        image, target = shapes[index]
        canvas = np.full((height, width, 3), 128, np.uint8)
        canvas[:, left:left + height] = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(canvas).save(folder / f"photo{index}.jpg", quality=90)
        coco["images"].append({"id": index, "file_name": f"photo{index}.jpg", "width": width, "height": height})
        for mask, label in zip(target["masks"], target["labels"].tolist(), strict=True):
            full = np.zeros((height, width), np.uint8, order="F")
            full[:, left:left + height] = mask.numpy()
            rle = mask_utils.encode(full)
            x, y, w, h = mask_utils.toBbox(rle).tolist()
            rle["counts"] = rle["counts"].decode("ascii")
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": index, "category_id": label,
                                        "bbox": [x, y, w, h], "area": float(mask.sum()), "iscrowd": 0,
                                        "segmentation": rle})
    annotations = folder / "instances.json"
    annotations.write_text(json.dumps(coco))
    return annotations


def run_on_photos(run_dir: Path, photos: Path, annotations: Path, copy: Path) -> Path:
    """A copy of the run whose data are the photos (all of them in its val split) and whose best.pt is the run's."""
    shutil.copytree(run_dir, copy, dirs_exist_ok=True)
    config_path = copy / ".hydra" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["data"] = {"name": "coco", "images": str(photos), "annotations": str(annotations), "keep_empty": True,
                      "batch_size": 4, "num_workers": 0}
    ids = [image["id"] for image in json.loads(annotations.read_text())["images"]]
    split = copy / "photos_split.json"  # every photo but the last in val (train may not be empty)
    split.write_text(json.dumps({"train": ids[-1:], "val": ids[:-1], "test": []}))
    config["split"] = {"name": "predefined", "files": {"train": None, "val": None, "test": None},
                       "from_run": str(split), "seed": 0}
    config_path.write_text(yaml.safe_dump(config))
    return copy


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(run_dir: Path, photos: Path, annotations: Path, scratch: Path, repeats: int) -> dict[str, dict]:
    files = sorted(photos.glob("*.jpg"))[:-1]  # the photos both commands predict (the last one is evaluate's train)
    images = [decode_pixels(path, exif_transpose=True) for path in files]
    evaluated = run_on_photos(run_dir, photos, annotations, scratch / f"eval_{run_dir.name}")
    saved = load_saved_model(run_dir, device="cpu")
    threshold = saved.cfg["eval"]["score_threshold"]
    samples: dict[str, dict[str, list[float]]] = {"predict": {}, "evaluate": {}}

    def forward(kept_above: float | None) -> None:
        with torch.inference_mode():
            if kept_above is None:
                detect_each(saved.model, images)
            else:
                with scores_at_least(saved.model, kept_above):
                    detect_each(saved.model, images)

    for _ in range(repeats):  # interleaved: every repetition measures every part once
        startup = timed(lambda: load_saved_model(run_dir, device="cpu"))
        for command, work, kept_above in (
            ("predict", lambda: predict_images(run_dir, files, out=scratch / "predicted", device="cpu",
                                               progress=False), threshold),
            ("evaluate", lambda: evaluate_run(evaluated, "val", device="cpu", progress=False), None),
        ):
            total = timed(work)
            model_time = timed(lambda k=kept_above: forward(k))
            parts = samples[command]
            for key, value in (("startup_s", startup), ("forward_per_image_s", model_time / len(images)),
                               ("outside_per_image_s", (total - startup - model_time) / len(images))):
                parts.setdefault(key, []).append(value)
            parts.setdefault("ratio", []).append(parts["outside_per_image_s"][-1] / parts["forward_per_image_s"][-1])
    return {command: {key: statistics.median(values) for key, values in parts.items()}
            for command, parts in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", help="a run folder (repeatable); default: train two")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", default="800x600", help="photo WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        runs = args.run or [train_small_run(arch, scratch) for arch in ("faster_rcnn", "mask_rcnn")]
        photos = scratch / "photos"
        photos.mkdir()
        annotations = write_photos(photos, args.images + 1, width, height)
        for run_dir in runs:
            arch = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["model"]["arch"]
            for command, figures in measure(run_dir, photos, annotations, scratch, args.repeats).items():
                print(f"{arch:12} {command:9} {args.images} photos {width}x{height}: forward "
                      f"{figures['forward_per_image_s']:.3f} s/image, outside the forward "
                      f"{figures['outside_per_image_s']:.3f} s/image, ratio {figures['ratio']:.2f} (target <= 0.5), "
                      f"start-up {figures['startup_s']:.2f} s (target < 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

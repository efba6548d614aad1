"""Does starting from a trained run help on new data? The measured benefit of `model.weights=RUN_DIR`.

1. source: a run on the built-in shapes (the default `train`: Faster R-CNN R18-FPN, 6 epochs), or --source RUN_DIR;
2. target: a small COCO dataset this script writes: the shapes drawn with other colours (inverted, channels
   rotated) and smaller (drawn at 112 px, pasted onto a 160 px background), two classes only (circle, square:
   images with a triangle are left out), so the class-specific layers are re-initialised;
3. for each seed: the same 2-epoch run on the target twice, from scratch and from the source (model.weights), with
   the val mAP after each epoch (eval.every=1).

It prints val mAP and mAP50 after epoch 2 for both starts per seed, their means and the differences, and writes
them to OUT/results.json.

    python scripts/measure_finetune.py --out /tmp/finetune
    python scripts/measure_finetune.py --out /tmp/finetune --source outputs/2026-11-23/12-23-08 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from losslab import compose_config, run
from losslab.data.shapes import render_image, textured_background

CANVAS, DRAWN = 160, 112  # target images, and the size the shapes are drawn at before pasting
CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]  # shapes' labels 1 and 2; 3 is the triangle


def recoloured(image: np.ndarray) -> np.ndarray:
    """Other colours than the built-in shapes: inverted, with the channels rotated."""
    return 1.0 - image[..., [2, 0, 1]]


def write_target(folder: Path, num_images: int, seed: int = 1000) -> Path:
    """`num_images` recoloured, smaller circles and squares as a COCO dataset in `folder`; returns the JSON file."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    index = 0
    while len(images) < num_images:
        rng = np.random.default_rng((seed, index))
        index += 1
        drawn, masks, labels = render_image(rng, DRAWN, 1, 3)
        if not labels or 3 in labels:
            continue
        canvas = textured_background(rng, CANVAS)
        top, left = rng.integers(0, CANVAS - DRAWN + 1, size=2)
        window = canvas[top:top + DRAWN, left:left + DRAWN]
        shapes = masks.any(axis=0)
        window[shapes] = drawn[shapes]  # the shapes only, on the canvas's own background
        image_id = len(images) + 1
        file_name = f"{image_id:04d}.png"
        Image.fromarray((recoloured(canvas) * 255).round().astype(np.uint8)).save(folder / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": CANVAS, "height": CANVAS})
        for mask, label in zip(masks, labels, strict=True):
            full = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
            full[top:top + DRAWN, left:left + DRAWN] = mask
            rle = mask_utils.encode(np.asfortranarray(full))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(full.sum()),
                                "iscrowd": 0, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return path


def train(overrides: list[str]) -> list[dict]:
    return run(compose_config(["trainer.progress=false", *overrides])).history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the data and the runs")
    parser.add_argument("--source", type=Path, help="a finished run to start from (default: train one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=48, help="target images (half train, a quarter val)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")

    source = args.source or args.out / "source"
    if args.source is None:
        train([f"run_dir={source}"])
    annotations = write_target(args.out / "target", args.images)
    target = ["data=coco", f"data.images={args.out / 'target' / 'images'}", f"data.annotations={annotations}",
              "data.num_workers=0", "trainer.max_epochs=2", "eval.every=1"]
    results = []
    for seed in args.seeds:
        row = {"seed": seed}
        for start, weights in (("scratch", []), ("fine_tuned", [f"model.weights={source}"])):
            history = train([*target, *weights, f"trainer.seed={seed}", f"run_dir={args.out / f'{start}_{seed}'}"])
            row[start] = {"mAP": history[-1]["val/mAP"], "mAP50": history[-1]["val/mAP50"]}
        results.append(row)
        print(f"seed {seed}: val mAP after 2 epochs: scratch {row['scratch']['mAP']:.3f} "
              f"(mAP50 {row['scratch']['mAP50']:.3f}), from the source run {row['fine_tuned']['mAP']:.3f} "
              f"(mAP50 {row['fine_tuned']['mAP50']:.3f})")
    means = {start: {metric: statistics.mean(r[start][metric] for r in results) for metric in ("mAP", "mAP50")}
             for start in ("scratch", "fine_tuned")}
    gain = means["fine_tuned"]["mAP"] - means["scratch"]["mAP"]
    print(f"mean over {len(results)} seeds: scratch mAP {means['scratch']['mAP']:.3f} "
          f"(mAP50 {means['scratch']['mAP50']:.3f}), from the source run mAP {means['fine_tuned']['mAP']:.3f} "
          f"(mAP50 {means['fine_tuned']['mAP50']:.3f}); difference {gain:+.3f}")
    (args.out / "results.json").write_text(json.dumps({"source": str(source), "seeds": results, "means": means},
                                                      indent=2))


if __name__ == "__main__":
    main()

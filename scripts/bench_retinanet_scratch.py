"""Does RetinaNet from scratch train stably at the default 128 px on photo-like data? Train loss per epoch.

Real photo sets (Pascal VOC, 40 photos of many sizes) made RetinaNet from scratch diverge with the default
optimizer (train loss 2.53 -> 4.07 in epoch 2); none is available offline, so this script writes a proxy: photos'
traits the built-in shapes lack: many sizes and both orientations (VOC's), 12 classes told apart by texture and
colour, objects from tiny to most of the frame, cluttered backgrounds (low-frequency colour fields, edges, sensor
noise) and unlabelled distractors. Then it trains each setting (`train model=retinanet` with the given overrides)
for a few epochs on it and prints the train and val loss of every epoch, and writes OUT/results.json.

    python scripts/bench_retinanet_scratch.py --out /tmp/retina
    python scripts/bench_retinanet_scratch.py --out /tmp/retina --settings "" "optimizer.lr=0.0001"
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from losslab import compose_config, run

SIZES = [(500, 375), (375, 500), (500, 333), (660, 432), (253, 199), (480, 640), (640, 427), (334, 500)]
CLASSES = 12


def colour_field(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth random colour field with edges and noise: a background as cluttered as a photo's."""
    coarse = rng.uniform(0, 255, size=(rng.integers(3, 8), rng.integers(3, 8), 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(5, 20)):  # straight edges: walls, tables, horizons
        x0, y0, x1, y1 = rng.integers(0, max(width, height), size=4)
        draw.line([(x0, y0), (x1, y1)], fill=tuple(rng.integers(0, 256, 3).tolist()), width=int(rng.integers(1, 6)))
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))


def texture(rng: np.random.Generator, label: int, size: tuple[int, int]) -> Image.Image:
    """The class's look: its own hue, pattern (stripes, checks, spots, grain) and period, varied per object."""
    width, height = size
    hue = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 31 + 160) % 256], dtype=float)
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    period = 4 + (label % 4) * 3
    angle = rng.uniform(0, math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    pattern = {0: np.sin(along / period * 2 * math.pi),
               1: np.sign(np.sin(xx / period * math.pi) * np.sin(yy / period * math.pi)),
               2: np.cos(np.hypot(xx % (2 * period) - period, yy % (2 * period) - period) / period * math.pi),
               }.get(label % 4, rng.normal(size=(height, width)))
    shade = np.linspace(0.7, 1.2, width)[None, :] * rng.uniform(0.7, 1.1)  # lit from one side
    pixels = hue[None, None, :] * shade[..., None] + 50 * pattern[..., None] + rng.normal(0, 10, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def shape_mask(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """An ellipse, a rectangle or a random polygon filling most of `size`."""
    width, height = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse([0, 0, width - 1, height - 1], fill=255)
    elif kind == 1:
        draw.rectangle([0, 0, width - 1, height - 1], fill=255)
    else:
        angles = np.sort(rng.uniform(0, 2 * math.pi, rng.integers(5, 9)))
        points = [(width / 2 * (1 + math.cos(a)), height / 2 * (1 + math.sin(a))) for a in angles]
        draw.polygon(points, fill=255)
    return mask


def photo(rng: np.random.Generator) -> tuple[Image.Image, list[dict]]:
    """One photo-like image and its objects ({"bbox": [x, y, w, h], "category_id"})."""
    width, height = SIZES[rng.integers(len(SIZES))]
    image = colour_field(rng, width, height)
    objects = []
    for index in range(rng.integers(1, 7) + 3):
        labelled = index >= 3  # the first three are unlabelled distractors (grey blobs) under the objects
        side = min(width, height) * rng.uniform(0.05, 0.7)
        size = (max(4, int(side * rng.uniform(0.5, 1.5))), max(4, int(side * rng.uniform(0.5, 1.5))))
        size = (min(size[0], width), min(size[1], height))
        x, y = int(rng.integers(0, width - size[0] + 1)), int(rng.integers(0, height - size[1] + 1))
        label = int(rng.integers(CLASSES))
        fill = texture(rng, label, size) if labelled else Image.new("RGB", size, tuple(rng.integers(60, 200, 3)))
        mask = shape_mask(rng, size)
        image.paste(fill, (x, y), mask)
        if labelled:
            left, top, right, bottom = mask.getbbox()
            objects.append({"bbox": [x + left, y + top, right - left, bottom - top], "category_id": label + 1})
    pixels = np.asarray(image, dtype=float) + rng.normal(0, 6, (height, width, 3))  # sensor noise
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), objects


def write_photos(folder: Path, num_images: int, seed: int) -> Path:
    """`num_images` photo-like images as a COCO dataset in `folder`; returns the annotation file."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": k + 1, "name": f"class{k + 1}"} for k in range(CLASSES)]}
    for image_id in range(1, num_images + 1):
        image, objects = photo(np.random.default_rng((seed, image_id)))
        image.save(folder / "images" / f"{image_id:04d}.jpg", quality=90)
        coco["images"].append({"id": image_id, "file_name": f"{image_id:04d}.jpg", "width": image.width,
                               "height": image.height})
        for item in objects:
            width, height = item["bbox"][2:]
            coco["annotations"].append({**item, "id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "area": width * height, "iscrowd": 0})
    path = folder / "instances.json"
    path.write_text(json.dumps(coco))
    return path


def train_losses(data: Path, annotations: Path, setting: str, epochs: int, out: Path) -> list[dict]:
    """Train and val loss of each epoch of `train model=retinanet data=coco ... SETTING` on the proxy."""
    overrides = ["model=retinanet", "data=coco", f"data.images={data / 'images'}", f"data.annotations={annotations}",
                 "data.num_workers=0", f"trainer.max_epochs={epochs}", "trainer.progress=false", "eval.every=0",
                 "trainer.checkpoints=none", f"run_dir={out}", *setting.split()]
    result = run(compose_config(overrides))
    return [{"epoch": row["epoch"], "train/loss": round(row["train/loss"], 3), "val/loss": round(row["val/loss"], 3)}
            for row in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", default=[""], help="overrides per setting, one string each")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    annotations = args.out / "data" / "instances.json"
    if not annotations.is_file():
        write_photos(args.out / "data", args.images, args.seed)
    results = {}
    for index, setting in enumerate(args.settings):
        results[setting or "defaults"] = train_losses(args.out / "data", annotations, setting, args.epochs,
                                                      args.out / f"run{index}")
        print(setting or "defaults", [row["train/loss"] for row in results[setting or "defaults"]],
              "val", [row["val/loss"] for row in results[setting or "defaults"]], flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

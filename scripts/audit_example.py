"""Make the made-up COCO dataset of docs/data.md's audit example and audit it: docs/data_audit.png.

    python scripts/audit_example.py [--png docs/data_audit.png]

200 images of three sizes; four classes from common to rare; boxes from a few pixels to most of the image, some cut
by the frame; a few images saved twice (a duplicate within a split and copies across the split files: leaks).
The dataset and its audit are written into a temporary folder and removed; the table is printed and the figure
copied to `--png`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from losslab.cli import main as losslab

CLASSES = ("person", "car", "dog", "bicycle")
SHARES = (0.62, 0.27, 0.09, 0.02)  # of the objects: imbalance about 30:1
SIZES = ((640, 480), (1280, 720), (480, 640))


def write_dataset(folder: Path, images: int = 200, seed: int = 0) -> tuple[Path, Path]:
    """A COCO images folder and train.json / val.json (every fifth image in val); three val images are copies of
    train images and one train image is a copy of another."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    entries, annotations = [], []
    for i in range(1, images + 1):
        width, height = SIZES[rng.choice(3, p=[0.6, 0.3, 0.1])]
        name = f"{i:04d}.jpg"
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((width, height)).save(folder / "images" / name, quality=80)
        entries.append({"id": i, "file_name": name, "width": width, "height": height})
        for _ in range(rng.poisson(3.0) if rng.random() > 0.05 else 0):
            side = float(np.exp(rng.uniform(np.log(6), np.log(0.7 * min(width, height)))))
            aspect = float(np.exp(rng.normal(0, 0.45)))
            w, h = min(side * np.sqrt(aspect), 0.95 * width), min(side / np.sqrt(aspect), 0.95 * height)
            x, y = rng.uniform(-0.1 * w, width - 0.9 * w), rng.uniform(-0.1 * h, height - 0.9 * h)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "bbox": [x, y, w, h], "iscrowd": 0,
                                "category_id": int(rng.choice(4, p=SHARES)) + 1, "area": w * h})
    for copy, original in ((5, 3), (10, 4), (15, 6), (7, 2)):  # val 5, 10, 15 leak train images; 7 duplicates 2
        shutil.copyfile(folder / "images" / f"{original:04d}.jpg", folder / "images" / f"{copy:04d}.jpg")
        entries[copy - 1].update(width=entries[original - 1]["width"], height=entries[original - 1]["height"])
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(CLASSES)]
    files = []
    for split, keep in (("train", lambda i: i % 5 != 0), ("val", lambda i: i % 5 == 0)):
        ids = {entry["id"] for entry in entries if keep(entry["id"])}
        path = folder / f"{split}.json"
        path.write_text(json.dumps({"images": [e for e in entries if e["id"] in ids], "categories": categories,
                                    "annotations": [a for a in annotations if a["image_id"] in ids]}))
        files.append(path)
    return files[0], files[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=Path("docs/data_audit.png"), help="where the figure goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        train, val = write_dataset(Path(scratch))
        audit = Path(scratch) / "audit"
        code = losslab(["data", "data=coco", f"data.images={Path(scratch) / 'images'}", "split=predefined",
                        f"split.files.train={train}", f"split.files.val={val}", "--out", str(audit)])
        if code == 0:
            shutil.copyfile(audit / "data_audit.png", args.png)
    return code


if __name__ == "__main__":
    sys.exit(main())

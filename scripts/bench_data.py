"""How does losslab's data set-up grow? Seconds and peak memory until the first training batch, on made-up data.

For each size it writes N tiny JPEG images (32x32) with about 8 polygon objects each in the chosen format, then
measures, each in a fresh Python process (so imports, caches in memory and the allocator start from nothing):

- first: the first run over these files (no cache of the checked index: it is built and written);
- cached: a second run over the same unchanged files (the cache written by the first is read);
- and, with --no-cache, a run with data.cache=false (the checks every time, nothing written).

A measurement is the public API, as a user's script or `train` calls it: compose_config, build_dataloaders and
the first batch of the train loader (data.num_workers=0: the set-up alone, no worker start-up). Seconds count
from composing the config to the first batch (losslab, torch and torchvision are imported before the clock starts);
peak memory is the process's ru_maxrss, imports included (the figures of the imports are printed beside).

    python scripts/bench_data.py                        # 10k and 100k images, COCO
    python scripts/bench_data.py --images 20000 --work /tmp/bench_data --keep
    python scripts/bench_data.py --images 10000 --format coco --no-cache
    python scripts/bench_data.py --images 10000 --format yolo    # the same images and polygons, Ultralytics' layout

The data and the cache live in a temporary folder (or --work; --keep keeps them to measure again without writing
the images anew); the cache folder is set with LOSSLAB_CACHE, so the user's own cache is never touched.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SIDE = 32  # pixels: tiny images, so the set-up and not the decoding is measured
OBJECTS = 8  # polygon objects per image, on average
CLASSES = ("a", "b", "c", "d", "e")


def tiny_jpegs(rng: np.random.Generator, variants: int = 16) -> list[bytes]:
    """A few distinct encoded 32x32 JPEGs; the files cycle through them (writing, not encoding, is the cost)."""
    from PIL import Image

    encoded = []
    for _ in range(variants):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        encoded.append(buffer.getvalue())
    return encoded


def polygons(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` hexagons inside a SIDE x SIDE image: count x 12 coordinates (x1, y1, ..., y6), rounded as tools do."""
    corner = rng.uniform(0, SIDE - 12, (count, 1, 2))
    return np.round(corner + rng.uniform(0, 12, (count, 6, 2)), 2).reshape(count, 12)


def write_coco(folder: Path, count: int) -> list[str]:
    """`count` images in folder/images and folder/instances.json; the overrides that read them."""
    rng = np.random.default_rng(0)
    images_folder = folder / "images"
    images_folder.mkdir(parents=True)
    jpegs = tiny_jpegs(rng)
    per_image = rng.integers(OBJECTS - 4, OBJECTS + 5, count)  # 4..12, mean 8
    shapes = polygons(rng, int(per_image.sum()))
    categories = rng.integers(1, len(CLASSES) + 1, len(shapes))
    images, annotations = [], []
    for i in range(count):
        name = f"{i:06d}.jpg"
        (images_folder / name).write_bytes(jpegs[i % len(jpegs)])
        images.append({"id": i + 1, "file_name": name, "width": SIDE, "height": SIDE})
    owner = np.repeat(np.arange(1, count + 1), per_image)
    for k, (shape, image_id, category) in enumerate(zip(shapes.tolist(), owner.tolist(), categories.tolist(),
                                                        strict=True)):
        xs, ys = shape[0::2], shape[1::2]
        annotations.append({"id": k + 1, "image_id": image_id, "category_id": category, "iscrowd": 0,
                            "bbox": [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)],
                            "area": 1.0, "segmentation": [shape]})
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": k, "name": name} for k, name in enumerate(CLASSES, start=1)]}
    (folder / "instances.json").write_text(json.dumps(document))
    return ["data=coco", f"data.images={images_folder}", f"data.annotations={folder / 'instances.json'}"]


def write_yolo(folder: Path, count: int) -> list[str]:
    """The images and polygons of `write_coco` in Ultralytics' layout: folder/data.yaml, images/{train,val} and
    labels/{train,val} (the first 90% of the images train, the rest val), one `class x1 y1 ...` line per polygon,
    normalised to the image's side; the overrides that read them."""
    rng = np.random.default_rng(0)  # the same draws, in the same order, as write_coco's
    jpegs = tiny_jpegs(rng)
    per_image = rng.integers(OBJECTS - 4, OBJECTS + 5, count)
    shapes = polygons(rng, int(per_image.sum()))
    categories = rng.integers(1, len(CLASSES) + 1, len(shapes))
    lines = [f"{category - 1} {' '.join(f'{value / SIDE:.6f}' for value in shape)}\n"
             for shape, category in zip(shapes.tolist(), categories.tolist(), strict=True)]
    starts = np.concatenate([[0], np.cumsum(per_image)]).tolist()
    for split in ("train", "val"):
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
    for i in range(count):
        split = "train" if i < count * 9 // 10 else "val"
        (folder / "images" / split / f"{i:06d}.jpg").write_bytes(jpegs[i % len(jpegs)])
        (folder / "labels" / split / f"{i:06d}.txt").write_text("".join(lines[starts[i]:starts[i + 1]]))
    (folder / "data.yaml").write_text(f"path: {folder}\ntrain: images/train\nval: images/val\n"
                                      f"names: {json.dumps(list(CLASSES))}\n")
    return ["data=yolo", f"data.yaml={folder / 'data.yaml'}"]


# One writer per data= option: each writes the same images and polygons in its format, so formats compare.
WRITERS = {"coco": write_coco, "yolo": write_yolo}


def measure(overrides: list[str]) -> dict:
    """In this (fresh) process: seconds and peak memory from composing the config to the first train batch."""
    import resource
    import time

    started = time.perf_counter()
    # Imported before the clock starts, as any run has them: what is measured is the data's set-up.
    import losslab.config.validation  # noqa: F401
    import losslab.training.builders  # noqa: F401
    from losslab import build_dataloaders, compose_config

    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    cfg = compose_config([*overrides, "data.num_workers=0", "trainer.progress=false"])
    loaders = build_dataloaders(cfg)
    images, _ = next(iter(loaders["train"]))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": round(seconds, 2), "imports_s": round(start - started, 2), "peak_gb": round(peak / 2**20, 3),
            "imports_gb": round(after_imports / 2**20, 3), "train_images": len(loaders["train"].dataset),
            "batch": len(images)}


def measure_in_subprocess(overrides: list[str], cache: Path) -> dict:
    environment = {**os.environ, "LOSSLAB_CACHE": str(cache)}
    result = subprocess.run([sys.executable, __file__, "--measure", "--", *overrides], env=environment,
                            capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"the measurement failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench(count: int, data_format: str, work: Path, no_cache: bool) -> None:
    folder = work / f"{data_format}_{count}"
    if not (folder / "done").is_file():  # written last: a folder without it is an interrupted write
        shutil.rmtree(folder, ignore_errors=True)
        overrides = WRITERS[data_format](folder, count)
        (folder / "done").write_text(json.dumps(overrides))
    overrides = json.loads((folder / "done").read_text())
    cache = work / f"cache_{data_format}_{count}"
    shutil.rmtree(cache, ignore_errors=True)
    runs = {"first": overrides, "cached": overrides}
    if no_cache:
        runs["data.cache=false"] = [*overrides, "data.cache=false"]
    for label, run_overrides in runs.items():
        figures = measure_in_subprocess(run_overrides, cache)
        print(f"data={data_format} {count:>7d} images, {label:16s} {figures['seconds']:7.2f} s  "
              f"peak {figures['peak_gb']:.2f} GB  (imports before: {figures['imports_s']:.1f} s, "
              f"{figures['imports_gb']:.2f} GB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[10_000, 100_000], help="dataset sizes")
    parser.add_argument("--format", choices=sorted(WRITERS), default="coco", help="the data= option to write")
    parser.add_argument("--work", type=Path, help="folder for the data and the cache (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep --work's data for the next measurement")
    parser.add_argument("--no-cache", action="store_true", help="also measure a run with data.cache=false")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process's part
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.overrides)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        for count in args.images:
            bench(count, args.format, work, args.no_cache)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Peak memory of drawing Mask R-CNN's masks on a large photo, as `losslab predict` draws them.

    python scripts/bench_mask_drawing.py [--size 6000x3375 4032x3024] [--masks 0 61 100]

For each size and number of masks, a new process draws that many made-up detections (each box half the photo's
width and height, a random 28 x 28 probability map) with `draw_detections`, and reports its peak resident memory
(ru_maxrss) and the peak added over the same photo with no mask.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

DRAW = """
import resource, sys, torch
from losslab.tasks.detection import draw_detections
torch.manual_seed(0)
height, width, count = map(int, sys.argv[1:])
image = torch.rand(3, height, width)
corners = torch.rand(count, 2) * torch.tensor([width * 0.5, height * 0.5])
boxes = torch.cat([corners, corners + torch.tensor([width * 0.5, height * 0.5])], dim=1)
prediction = {"boxes": boxes, "labels": torch.randint(1, 4, (count,)), "scores": torch.rand(count),
              "mask_crops": torch.rand(count, 28, 28)}
draw_detections(image, prediction, ["a", "b", "c"])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_gib(height: int, width: int, masks: int) -> float:
    done = subprocess.run([sys.executable, "-c", DRAW, str(height), str(width), str(masks)], capture_output=True,
                          text=True, timeout=600, check=True)
    return int(done.stdout.split()[-1]) / 2**20  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs="+", default=["6000x3375", "4032x3024"])
    parser.add_argument("--masks", type=int, nargs="+", default=[0, 61, 100])
    args = parser.parse_args()
    for size in args.size:
        width, height = map(int, size.split("x"))
        peaks = {masks: peak_gib(height, width, masks) for masks in args.masks}
        for masks, peak in peaks.items():
            print(f"{size}, {masks:>3} masks: peak {peak:.2f} GiB, {peak - peaks[args.masks[0]]:+.2f} GiB over "
                  f"{args.masks[0]} masks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

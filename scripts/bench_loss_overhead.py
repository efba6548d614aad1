"""Cost of losslab's configurable loss path against stock torchvision's hard-coded losses.

The same detector (same weights, same batch, same random stream) is trained step by step once
with torchvision's own heads and once with losslab's loss-configurable heads, interleaved A B A B
over several repetitions; the script prints the median seconds per step of each and their ratio.

    python scripts/bench_loss_overhead.py                       # Faster R-CNN, CPU
    python scripts/bench_loss_overhead.py --arch retinanet --device cuda --size 512
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead

from losslab.data.shapes import ShapesDataset
from losslab.losses.build import build_losses
from losslab.modeling.detectors import SCRATCH, anchor_generator, create_detector, feature_pyramid


def stock_detector(arch: str, backbone: str, num_classes: int, size: int, box_batch: int):
    """The same architecture built with torchvision's own heads and losses."""
    features = feature_pyramid(backbone, SCRATCH, None, for_retinanet=arch == "retinanet")
    anchors = anchor_generator(arch, backbone)
    if arch == "retinanet":
        head = RetinaNetHead(features.out_channels, anchors.num_anchors_per_location()[0], num_classes + 1)
        return RetinaNet(features, num_classes + 1, min_size=size, max_size=size, anchor_generator=anchors, head=head)
    cls = FasterRCNN if arch == "faster_rcnn" else MaskRCNN
    return cls(features, num_classes + 1, min_size=size, max_size=size, rpn_anchor_generator=anchors,
               box_batch_size_per_image=box_batch)


def seconds_per_step(model, batch, steps: int, device: torch.device) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: every repetition sees the same weights
    images, targets = batch
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="faster_rcnn", choices=["faster_rcnn", "mask_rcnn", "retinanet"])
    parser.add_argument("--backbone", default="resnet18_fpn")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="training steps per repetition")
    parser.add_argument("--reps", type=int, default=7, help="A/B repetitions (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    dataset = ShapesDataset(num_images=args.batch, image_size=args.size, min_objects=1, max_objects=4, seed=0)
    images, targets = zip(*(dataset[i] for i in range(args.batch)), strict=True)
    batch = ([i.to(device) for i in images],
             [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets])

    torch.manual_seed(0)
    ours = create_detector(args.arch, args.backbone, 3, build_losses(args.arch, {}, {}), min_size=args.size,
                           max_size=args.size, box_batch_size_per_image=64).to(device).train()
    stock = stock_detector(args.arch, args.backbone, 3, args.size, 64).to(device).train()
    stock.load_state_dict(ours.state_dict())
    seconds_per_step(stock, batch, 2, device)  # warm-up: allocator, cudnn, first-call costs
    seconds_per_step(ours, batch, 2, device)

    times: dict[str, list[float]] = {"stock": [], "losslab": []}
    for _ in range(args.reps):
        times["stock"].append(seconds_per_step(stock, batch, args.steps, device))
        times["losslab"].append(seconds_per_step(ours, batch, args.steps, device))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.arch} {args.backbone} {args.size}px batch {args.batch} on {device}, "
          f"{args.reps} x {args.steps} steps, median s/step:")
    for name, value in medians.items():
        print(f"  {name:8s} {value:.4f}  (runs: {', '.join(f'{v:.4f}' for v in times[name])})")
    print(f"  losslab / stock time per step: {medians['losslab'] / medians['stock']:.3f}")


if __name__ == "__main__":
    main()

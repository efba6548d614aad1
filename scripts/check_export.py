"""How closely exported models reproduce the PyTorch model: the differences `losslab export`'s check measures, on
many more sample sizes than the command sweeps (sizes whose resize scale rounds apart in float32), for every
architecture and format, with tolerances so wide that nothing is refused.

Each model is untrained (seeded), of the configured size, with the shapes data's 3 classes, or a run's trained
detector (--run).

    python scripts/check_export.py                  # 64 px models, TorchScript and ONNX, 200 swept sizes
    python scripts/check_export.py --size 320 --formats torchscript --sizes 50
    python scripts/check_export.py --run outputs/2026-12-06/23-03-16 --formats onnx
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from losslab import build_model, compose_config
from losslab.commands.saved_model import load_saved_model
from losslab.evaluation import exporting

CLASSES = ["circle", "square", "triangle"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="model.min_size and model.max_size (default 64)")
    parser.add_argument("--sizes", type=int, default=200, help="sample sizes swept besides the square (default 200)")
    parser.add_argument("--archs", nargs="+", default=["faster_rcnn", "retinanet", "mask_rcnn"])
    parser.add_argument("--formats", nargs="+", default=["torchscript", "onnx"])
    parser.add_argument("--run", type=Path, help="a detection run folder: its best.pt instead of untrained models")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for arch, model, classes, threshold in models(args):
            exportable = exporting.detection_export(model, classes, threshold, 1e9, 1e9, swept_sizes=args.sizes)
            for format in args.formats:
                exported = exporting.save(exportable, format, Path(folder) / f"{arch}.{format}")
                found = exportable.check([exported(image) for image in exportable.samples])
                print(f"{arch:12} {format:12} {len(exportable.samples)} images, {found.detections} pairs, "
                      f"{found.unmatched} unmatched: boxes {found.box:.2g} px of the model's input (largest at "
                      f"{found.where or '-'}), scores {found.score:.2g}", flush=True)


def models(args: argparse.Namespace):
    """(arch, model, classes, score threshold) of each model to check."""
    if args.run is not None:
        trained = load_saved_model(args.run, device="cpu")
        cfg = trained.cfg
        yield cfg["model"]["arch"], trained.model, trained.classes, float(cfg["eval"]["score_threshold"])
        return
    for arch in args.archs:
        cfg = compose_config([f"model={arch}", f"model.min_size={args.size}", f"model.max_size={args.size}",
                              "trainer.device=cpu"])
        torch.manual_seed(0)
        yield arch, build_model(cfg, num_classes=len(CLASSES)).eval(), CLASSES, float(cfg.eval.score_threshold)


if __name__ == "__main__":
    main()

"""How closely exported models reproduce the PyTorch model: the differences `losslab export`'s check measures, on
many more sample sizes than the command sweeps (sizes whose resize scale rounds apart in float32), for every
architecture and format, with tolerances so wide that nothing is refused.

Each model is untrained (seeded), of the configured size, with the shapes data's 3 classes.

    python scripts/check_export.py                  # 64 px models, TorchScript and ONNX, 200 swept sizes
    python scripts/check_export.py --size 320 --formats torchscript --sizes 50
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from losslab import build_model, compose_config
from losslab.evaluation import exporting

CLASSES = ["circle", "square", "triangle"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="model.min_size and model.max_size (default 64)")
    parser.add_argument("--sizes", type=int, default=200, help="sample sizes swept besides the square (default 200)")
    parser.add_argument("--archs", nargs="+", default=["faster_rcnn", "retinanet", "mask_rcnn"])
    parser.add_argument("--formats", nargs="+", default=["torchscript", "onnx"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            cfg = compose_config([f"model={arch}", f"model.min_size={args.size}", f"model.max_size={args.size}",
                                  "trainer.device=cpu"])
            torch.manual_seed(0)
            model = build_model(cfg, num_classes=len(CLASSES)).eval()
            exportable = exporting.detection_export(model, CLASSES, float(cfg.eval.score_threshold), 1e9, 1e9,
                                                    swept_sizes=args.sizes)
            for format in args.formats:
                exported = exporting.save(exportable, format, Path(folder) / f"{arch}.{format}")
                found = exportable.check([exported(image) for image in exportable.samples])
                print(f"{arch:12} {format:12} {len(exportable.samples)} images, {found.detections} pairs, "
                      f"{found.unmatched} unmatched: boxes {found.box:.2g} px of the model's input (largest at "
                      f"{found.where or '-'}), scores {found.score:.2g}", flush=True)


if __name__ == "__main__":
    main()

"""How closely exported models reproduce the PyTorch model: the differences `losslab export` measures on its sample
images, for every architecture and format, with tolerances so wide that nothing is refused.

Each model is untrained (seeded), of the configured size, with the shapes data's 3 classes; its run folder holds
only what export reads (config and checkpoint).

    python scripts/check_export.py                  # 64 px models, TorchScript and ONNX
    python scripts/check_export.py --size 320 --formats torchscript
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from losslab import build_model, compose_config
from losslab.commands.export import export_run
from losslab.training.checkpoints import save_checkpoint

CLASSES = ["circle", "square", "triangle"]


def untrained_run(run_dir: Path, arch: str, size: int) -> Path:
    cfg = compose_config([f"model={arch}", f"model.min_size={size}", f"model.max_size={size}", "trainer.device=cpu"])
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=len(CLASSES))
    save_checkpoint(run_dir / "checkpoints" / "best.pt", {"model": model.state_dict(), "epoch": 0, "classes": CLASSES})
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="model.min_size and model.max_size (default 64)")
    parser.add_argument("--archs", nargs="+", default=["faster_rcnn", "retinanet", "mask_rcnn"])
    parser.add_argument("--formats", nargs="+", default=["torchscript", "onnx"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            run_dir = untrained_run(Path(folder) / arch, arch, args.size)
            for format in args.formats:
                found = export_run(run_dir, format, box_tolerance=1e9, score_tolerance=1e9).differences
                print(f"{arch:12} {format:12} {found.detections} detections: boxes {found.box:.2g} px of the model's "
                      f"input (largest at {found.where or '-'}), scores {found.score:.2g}")


if __name__ == "__main__":
    main()

"""What a run folder's checkpoints cost on disk, per trainer.checkpoints and trainer.keep_resume_state choice.

For each model it builds the detector of the config, takes one optimizer step (so the optimizer holds its state,
e.g. AdamW's two moment buffers), and serialises the two kinds of checkpoint losslab writes: the weights (best.pt,
and last.pt of a finished run) and the resume state (last.pt while a run can go on). Sizes in MB (10^6 bytes).

    python scripts/checkpoint_sizes.py                                   # the default model and R50-FPN
    python scripts/checkpoint_sizes.py model=mask_rcnn optimizer=sgd     # trailing arguments: train overrides
"""

from __future__ import annotations

import argparse
import io

import torch
from omegaconf import OmegaConf

from losslab import build_model, compose_config
from losslab.training.checkpoints import weights_of
from losslab.training.optim import build_optimizer, build_schedulers


def serialized_mb(state: dict) -> float:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell() / 1e6


def sizes(overrides: list[str]) -> dict[str, float]:
    cfg = compose_config(overrides)
    model = build_model(cfg, num_classes=3)
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer, resolve=True), model)
    schedulers = build_schedulers(OmegaConf.to_container(cfg.scheduler, resolve=True), optimizer, steps_per_epoch=1)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()  # creates the optimizer's per-parameter state
    config = OmegaConf.to_yaml(cfg)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": schedulers.state_dict(),
             "scaler": None, "rng": {"torch": torch.get_rng_state()}, "epoch": 1, "history": [{"epoch": 1}],
             "metrics": {"epoch": 1}, "config": config, "classes": ["a", "b", "c"], "category_ids": [1, 2, 3]}
    weights, resume = serialized_mb(weights_of(state)), serialized_mb(state)
    return {"parameters (M)": sum(p.numel() for p in model.parameters()) / 1e6,
            "state_dict": serialized_mb(model.state_dict()), "weights (best.pt)": weights, "resume state": resume,
            "finished, best (default)": weights, "finished, both": 2 * weights,
            "finished, best + keep_resume_state": weights + resume, "while training, best": weights + resume}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="train overrides applied to every model")
    args = parser.parse_args()
    models = {"R18-FPN (default)": [], "R50-FPN": ["model.backbone=resnet50_fpn"]}
    table = {name: sizes([*extra, *args.overrides]) for name, extra in models.items()}
    rows = list(next(iter(table.values())))
    print(f"{'MB':<36}" + "".join(f"{name:>20}" for name in table))
    for row in rows:
        print(f"{row:<36}" + "".join(f"{table[name][row]:>20.1f}" for name in table))


if __name__ == "__main__":
    main()

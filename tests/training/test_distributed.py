"""Data-parallel training with torchrun: two CPU processes (gloo) give the epoch averages of one process, the user
loss they train with imported by each."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import TINY, USER_LOSSES, tiny_config
from losslab import build_dataloaders, build_model, run
from losslab.reporting.history import read_metrics

# RetinaNet computes each image's loss on its own (no proposal sampling, per-image normalisation) and
# batch size 1 keeps BatchNorm statistics per image, so the per-image losses do not depend on how the
# images are shared between processes. A vanishing learning rate keeps the weights those of the start,
# so the order the images come in does not matter either: both runs must average the same numbers.
SAME_PER_IMAGE_LOSSES = ["model=retinanet", "data.num_images=12", "data.batch_size=1", "optimizer=sgd",
                         "optimizer.lr=1e-12", "scheduler=none", "augment=none", "eval.every=1"]


# RetinaNet's default classification loss as a user's own (conftest's USER_LOSSES): every process imports it from
# the working folder, and it trains exactly as the built-in one does.
USER_FOCAL = ["loss/cls=custom", "loss.cls._target_=userloss.sigmoid_focal"]


def test_two_gloo_processes_average_like_one_process(tmp_path):
    single = run(tiny_config(*SAME_PER_IMAGE_LOSSES, run_dir=tmp_path / "single")).history[0]

    ddp_dir = tmp_path / "ddp"
    (tmp_path / "userloss.py").write_text(USER_LOSSES)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "losslab", *TINY, *SAME_PER_IMAGE_LOSSES, *USER_FOCAL, f"run_dir={ddp_dir}"]
    scratch = tmp_path.parent / f"{tmp_path.name}-tmp"  # the processes' temporary directory
    scratch.mkdir()
    completed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=280,
                               env={**os.environ, "TMPDIR": str(scratch), "PYTHONDONTWRITEBYTECODE": "1"})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    output = completed.stdout + completed.stderr
    assert output.count("user loss loss.cls._target_=userloss.sigmoid_focal") == 1  # rank 0 logs it

    (ddp,) = read_metrics(ddp_dir / "metrics.csv")
    trained = [key for key in single if key.startswith("train/") and not key.startswith("train/grad_share/")]
    assert {"train/loss", "train/classification", "train/box_regression"} <= set(trained)
    for key in trained:
        assert ddp[key] == pytest.approx(single[key], rel=1e-6), key
    # Validation holds BatchNorm in eval mode, on running statistics that each process gathered from its own
    # share of the training images (DDP keeps rank 0's, as torchvision's reference does without SyncBatchNorm):
    # the weights match, those statistics only nearly.
    validated = [key for key in single if key.startswith("val/")]
    assert {"val/loss", "val/classification", "val/mAP50"} <= set(validated)
    for key in validated:
        assert ddp[key] == pytest.approx(single[key], rel=1e-3, abs=1e-3), key
    # The gradient shares are rank 0's probe through rank 0's BatchNorm statistics (as validation): near, not equal.
    shares = [key for key in single if key.startswith("train/grad_share/")]
    assert shares and sum(ddp[key] for key in shares) == pytest.approx(1.0)
    for key in shares:
        assert ddp[key] == pytest.approx(single[key], abs=0.02), key
    # Only the main process writes: one run folder, nothing from the second process in the working directory.
    assert (ddp_dir / "checkpoints" / "best.pt").is_file() and (ddp_dir / "split.json").is_file()  # what a run keeps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single", "userloss.py"]
    # Hydra made a scratch folder for each process (the run takes its folder itself), removed when the run ended.
    assert not list(scratch.glob("losslab-*"))


def _validate_shard(rank: int, size: int, port: int, results) -> None:
    """One of `size` gloo processes: the validation loss and detection metrics of its shard, averaged over all."""
    import torch.distributed as dist

    from losslab import build_data
    from losslab.data.loaders import make_loaders
    from losslab.distributed import World
    from losslab.evaluation.inference import detection_metrics
    from losslab.training.loop import validation_loss

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        cfg = tiny_config(*SAME_PER_IMAGE_LOSSES)
        data = build_data(cfg)
        val = make_loaders(data, 1, world=World(rank, rank, size))["val"]
        torch.manual_seed(0)
        model = build_model(cfg, num_classes=len(data.classes))
        losses = validation_loss(model, val)
        metrics = detection_metrics(model, val, data.classes, score_threshold=0.0)
        results.put((rank, len(val), losses, metrics["mAP50"]))
    finally:
        dist.destroy_process_group()


def test_processes_with_no_validation_image_contribute_nothing():
    """One process more than there are validation images: the last process's shard is empty, and the averages
    stay those of one process over every image."""
    import socket

    import torch.multiprocessing as mp

    cfg = tiny_config(*SAME_PER_IMAGE_LOSSES)
    from losslab import build_data
    from losslab.evaluation.inference import detection_metrics
    from losslab.training.loop import validation_loss

    data = build_data(cfg)
    size = len(data.val) + 1
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=len(data.classes))
    val = build_dataloaders(cfg, data)["val"]
    single, single_map = validation_loss(model, val), detection_metrics(model, val, data.classes, 0.0)["mAP50"]

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_validate_shard, args=(rank, size, port, results)) for rank in range(size)]
    for process in processes:
        process.start()
    found = sorted(results.get(timeout=240) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert [batches for _, batches, _, _ in found] == [1] * (size - 1) + [0]
    for _, _, losses, mean_ap in found:
        assert losses.keys() == single.keys()
        assert losses == pytest.approx(single, rel=1e-6)
        assert mean_ap == pytest.approx(single_map, abs=1e-9)

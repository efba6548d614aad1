"""One selection metric per run: it picks best.pt, stops early, names summary.json's best epoch and ranks a sweep,
and `losslab evaluate` of a sweep's winner reproduces the number it was ranked by."""

from __future__ import annotations

import csv
import re

import pytest
import torch

from conftest import TINY, TINY_SEGMENTATION, tiny_config
from in_process import losslab, train
from losslab import compose_config
from losslab.config.validation import validate


@pytest.mark.parametrize(("overrides", "monitor", "mode", "every"), [
    ([], "val/mAP", "max", 1),  # evaluated every epoch by default: the study's yardstick is mAP
    (["eval.every=2"], "val/ref_loss", "min", 2),  # not every epoch evaluated: the reference loss, every epoch
    (["eval.every=0"], "val/ref_loss", "min", 0),
    (["trainer.monitor=val/loss"], "val/loss", "min", 1),  # the user's explicit choice wins
    (["trainer.monitor=val/F1", "eval.every=3"], "val/F1", "max", 1),  # an evaluated monitor evaluates every epoch
])
def test_auto_selects_a_yardstick_common_to_every_loss(overrides, monitor, mode, every):
    plan = validate(tiny_config(*overrides))
    assert (plan.monitor, plan.mode, plan.eval_every) == (monitor, mode, every)
    assert plan.sections["trainer"]["monitor"] == monitor  # what every reader of the config sees


def test_a_segmentation_run_selects_by_miou():
    plan = validate(compose_config(TINY_SEGMENTATION))
    assert (plan.monitor, plan.mode, plan.eval_every) == ("val/mIoU", "max", 1)


def test_early_stopping_and_a_plateau_scheduler_follow_the_selection_metric():
    plan = validate(tiny_config("trainer.early_stopping.enabled=true", "scheduler=plateau"))
    assert (plan.early_stopping.monitor, plan.early_stopping.mode) == ("val/mAP", "max")
    assert plan.sections["scheduler"]["mode"] == "max"  # ReduceLROnPlateau reduces when mAP stops rising
    apart = validate(tiny_config("trainer.early_stopping.enabled=true", "trainer.early_stopping.monitor=val/loss"))
    assert (apart.monitor, apart.early_stopping.monitor, apart.early_stopping.mode) == ("val/mAP", "val/loss", "min")


def test_a_sweeps_winner_is_ranked_at_the_epoch_it_keeps_and_evaluate_reproduces_its_number(tmp_path):
    sweep = tmp_path / "sweep"
    tiny = [override for override in TINY if not override.startswith("data.num_images")]
    result = train("-m", "loss=focal,default", *tiny, "model=retinanet", "trainer.max_epochs=3",
                   "data.num_images=16", "optimizer.lr=0.003", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with (sweep / "sweep_summary.csv").open() as f:
        jobs = list(csv.DictReader(f))
    assert {job["rank_by"] for job in jobs} == {"val/mAP"} and {job["checkpoint"] for job in jobs} == {"best.pt"}
    for job in jobs:  # the ranked epoch is the epoch best.pt holds
        kept = torch.load(sweep / job["job"] / "checkpoints" / "best.pt", map_location="cpu", weights_only=False)
        assert kept["epoch"] == int(job["kept_epoch"])
        assert float(job["value"]) == pytest.approx(kept["metrics"]["val/mAP"], abs=1e-12)
    winner = next(job for job in jobs if job["rank"] == "1")
    evaluated = losslab("evaluate", str(sweep / winner["job"]), "--device", "cpu", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (f"scored: val split (4 images), checkpoints/best.pt (epoch {winner['kept_epoch']})"
            in evaluated.stdout)
    assert float(re.search(r"^mAP\s+([0-9.]+)$", evaluated.stdout, re.M).group(1)) == pytest.approx(
        float(winner["value"]), abs=5e-5)  # the table prints 4 decimals

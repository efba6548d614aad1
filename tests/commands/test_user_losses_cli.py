"""A user's own losses run as a user runs them: `train` started like the console script (the working folder is not
on sys.path), in a folder outside the package holding the user's module and config folder."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, USER_LOSSES
from losslab.cli import main as losslab_main
from losslab.commands.saved_model import load_saved_model
from losslab.reporting.history import read_metrics

EXAMPLE = Path(__file__).parents[2] / "examples" / "polyloss"
QUICK = [*TINY, "eval.every=0"]


def _train(*args: str, cwd: Path, flags: tuple[str, ...] = (), tiny: bool = True
           ) -> tuple[subprocess.CompletedProcess, str]:
    """`train FLAGS ARGS` in `cwd` (with the tiny settings), started as the console script starts it: sys.path[0] is
    the script's own folder. Hydra's flags (-m, --config-dir DIR) go before the overrides."""
    script = cwd.parent / "bin" / "train"
    script.parent.mkdir(exist_ok=True)
    script.write_text("import sys\nfrom losslab.cli import train\nsys.exit(train())\n")
    settings = QUICK if tiny else []
    result = subprocess.run([sys.executable, str(script), *flags, *settings, *args], capture_output=True, text=True,
                            cwd=cwd, timeout=600)
    return result, result.stdout + result.stderr


def _work_folder(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "userloss.py").write_text(USER_LOSSES)
    return work


EVERY_COMPONENT = ["model=mask_rcnn",
                   "loss/cls=custom", "loss.cls._target_=userloss.scaled_ce", "+loss.cls.scale=2.0",
                   "loss/box=custom", "loss.box._target_=userloss.smooth_l1", "+loss.box.beta=0.5",
                   "loss/objectness=custom", "loss.objectness._target_=userloss.objectness_bce",
                   "loss/mask=custom", "loss.mask._target_=userloss.MaskBCE", "+loss.mask.weight=0.5"]
EVERY_TITLE = ("cls=userloss.scaled_ce(scale=2.0), box=userloss.smooth_l1(beta=0.5), "
               "objectness=userloss.objectness_bce(), mask=userloss.MaskBCE(weight=0.5)")


def test_a_user_loss_for_every_component_trains_resumes_and_is_reported_like_a_built_in(tmp_path, capsys):
    work = _work_folder(tmp_path)
    run_dir = work / "outputs" / "run"
    result, output = _train(*EVERY_COMPONENT, f"run_dir={run_dir}", "trainer.keep_resume_state=true", cwd=work)
    assert result.returncode == 0, output[-3000:]
    for key, target in (("cls", "scaled_ce"), ("box", "smooth_l1"), ("mask", "MaskBCE")):
        assert f"user loss loss.{key}._target_=userloss.{target} ({work / 'userloss.py'}): imported, and called " \
               "on a synthetic batch" in output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["loss"] == EVERY_TITLE
    (row,) = read_metrics(run_dir / "metrics.csv")
    # val/ref_* score the same weights with the built-in defaults: the yardstick every loss is compared on.
    assert row["val/classification"] == pytest.approx(2 * row["val/ref_classification"], rel=1e-5)
    assert row["val/mask"] == pytest.approx(0.5 * row["val/ref_mask"], rel=1e-5)
    assert row["val/objectness"] == pytest.approx(row["val/ref_objectness"], rel=1e-6)
    assert row["val/box_regression"] != pytest.approx(row["val/ref_box_regression"])  # beta 0.5, not 1/9

    assert losslab_main(["runs", str(work / "outputs")]) == 0
    assert EVERY_TITLE in capsys.readouterr().out

    result, output = _train(f"resume={run_dir}", "trainer.max_epochs=2", "trainer.progress=false", cwd=work,
                            tiny=False)
    assert result.returncode == 0, output[-3000:]
    assert f"resume={run_dir}: importing the user loss loss.cls._target_=userloss.scaled_ce that the run's stored " \
           "config names, because you asked to resume that run" in output
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.csv")] == [1, 2]
    assert json.loads((run_dir / "summary.json").read_text())["loss"] == EVERY_TITLE

    # Inference never imports what a run folder's config names: the model loads where userloss.py is not.
    assert "userloss" not in sys.modules
    saved = load_saved_model(run_dir, "last", device="cpu")
    assert saved.epoch == 2 and "userloss" not in sys.modules


def test_a_sweep_over_user_losses_from_a_config_dir_and_a_copy_of_a_built_in_gives_its_numbers(tmp_path):
    work = tmp_path / "polyloss"
    shutil.copytree(EXAMPLE, work)
    (work / "userloss.py").write_text(USER_LOSSES)
    (work / "conf" / "loss" / "cls" / "ce_copy.yaml").write_text(
        "defaults:\n  - custom\n  - _self_\n_target_: userloss.ce\n")
    sweep = tmp_path / "sweep"
    result, output = _train("loss/cls=ce,ce_copy,poly1", "trainer.checkpoints=false", f"hydra.sweep.dir={sweep}",
                            cwd=work, flags=("-m", "--config-dir", "conf"))
    assert result.returncode == 0, output[-3000:]
    with (sweep / "sweep_summary.csv").open() as f:
        rows = {row["overrides"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"loss/cls=ce", "loss/cls=ce_copy", "loss/cls=poly1"}
    assert {row["status"] for row in rows.values()} == {"completed"}
    built_in, copy, poly1 = (read_metrics(sweep / job / "metrics.csv") for job in ("0", "1", "2"))
    for ours, theirs in zip(built_in, copy, strict=True):
        assert {k: v for k, v in ours.items() if k != "time_s"} == {k: v for k, v in theirs.items() if k != "time_s"}
    assert poly1[0]["val/classification"] != built_in[0]["val/classification"]
    assert json.loads((sweep / "2" / "summary.json").read_text())["loss"] == \
        "cls=polyloss.poly1_cross_entropy(epsilon=1.0)"
    assert json.loads((sweep / "1" / "summary.json").read_text())["loss"] == "cls=userloss.ce()"


BROKEN = "import torch.nn.functional as F\n\ndef per_row(logits, labels):\n" \
         "    return F.cross_entropy(logits, labels, reduction='none')\n"


def test_a_broken_user_loss_stops_the_run_before_training_with_one_clear_error(tmp_path):
    work = _work_folder(tmp_path)
    (work / "broken.py").write_text(BROKEN)
    run_dir = work / "run"
    result, output = _train("loss/cls=custom", "loss.cls._target_=broken.per_row", f"run_dir={run_dir}", cwd=work)
    message = ("loss.cls._target_=broken.per_row (classification loss): returned shape [8] instead of a scalar "
               "(shape []) on a synthetic batch (logits [8, 4], labels [8])")
    assert result.returncode == 1 and message in output and "Traceback" not in output, output[-3000:]
    written = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert written <= {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "train.log",
                       "summary.json"}, written
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and message in summary["error"]


def test_launcher_workers_import_user_losses_from_the_working_folder(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install 'losslab[launchers]'")
    work = _work_folder(tmp_path)
    (work / "broken.py").write_text(BROKEN)
    sweep = tmp_path / "sweep"
    # Each job fails in its check, after its worker process imported the module: the sweep records why, and exits 1
    # as a sweep whose every job failed does.
    result, output = _train("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "loss/cls=custom",
                            "loss.cls._target_=broken.per_row,userloss.nothing", f"hydra.sweep.dir={sweep}",
                            cwd=work, flags=("-m",))
    assert result.returncode == 1 and "Joblib.Parallel" in output, output[-3000:]
    assert "the sweep failed: all 2 of its jobs failed" in output and "Traceback" not in output
    with (sweep / "sweep_summary.csv").open() as f:
        errors = {row["overrides"]: row["error"] for row in csv.DictReader(f)}
    assert "returned shape [8] instead of a scalar" in errors["loss.cls._target_=broken.per_row"]
    assert f"module userloss ({work / 'userloss.py'}) has no attribute 'nothing'" in \
        errors["loss.cls._target_=userloss.nothing"]

"""Sweeps through Hydra's plugins: the joblib launcher runs jobs in parallel, the Optuna sweeper searches."""

from __future__ import annotations

import csv

import pytest
import yaml

from conftest import TINY
from in_process import train


def _multirun(*args, cwd):
    result = train("-m", *TINY, *args, cwd=cwd)
    return result, result.stdout + result.stderr


def _summary(sweep):
    with (sweep / "sweep_summary.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_joblib_sweep_runs_both_jobs_and_summarises_them(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install 'losslab[launchers]'")
    sweep = tmp_path / "sweep"
    result, output = _multirun("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "loss=default,focal",
                               "eval.every=0", "trainer.checkpoints=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, output[-3000:]
    assert "Joblib.Parallel" in output  # the jobs went through the joblib launcher
    rows = _summary(sweep)
    assert sorted(row["overrides"] for row in rows) == ["loss=default", "loss=focal"]
    assert all(row["status"] == "completed" and float(row["value"]) > 0 for row in rows)
    assert (sweep / "sweep_curves.png").stat().st_size > 1000


def test_an_optuna_search_returns_the_monitored_metric_and_ranks_by_it(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install 'losslab[optuna]'")
    sweep = tmp_path / "sweep"
    result, output = _multirun("hparams_search=focal", "hydra.sweeper.n_trials=2", "trainer.checkpoints=false",
                               f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, output[-3000:]
    rows = _summary(sweep)
    assert len(rows) == 2 and {row["rank_by"] for row in rows} == {"val/mAP"}
    assert rows[0]["overrides"] != rows[1]["overrides"] and "loss.cls.gamma=" in rows[0]["overrides"]
    study = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(study["best_params"]) == {"loss.cls.gamma", "loss.cls.alpha", "optimizer.lr"}
    # The value Optuna optimised is what each run returned: its val/mAP at its kept epoch, the top of the summary.
    assert study["best_value"] == pytest.approx(float(rows[0]["value"]))


def test_a_study_storage_that_cannot_work_here_is_refused_before_anything_runs(tmp_path):
    """In the README's environment (Optuna 2.x beside SQLAlchemy 2) a database storage fails inside Optuna with a bare
    AssertionError; train refuses it first, saying why and what to do."""
    from importlib.metadata import version

    if int(version("optuna").split(".")[0]) >= 3 or int(version("sqlalchemy").split(".")[0]) < 2:
        pytest.skip("this environment's Optuna and SQLAlchemy work together")
    result = train("hparams_search=lr", "hydra.sweeper.storage=sqlite:///optuna.db", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "hydra.sweeper.storage=sqlite:///optuna.db" in output and "sqlalchemy<2" in output
    assert "Traceback" not in output and "AssertionError" not in output
    assert list(tmp_path.iterdir()) == []  # no database, no multirun folder

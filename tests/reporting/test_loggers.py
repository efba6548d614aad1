"""The TensorBoard and MLflow loggers, read back with each library's own reader."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from matplotlib.image import imsave

from losslab.errors import LosslabError
from losslab.reporting.loggers import MLflowLogger, TensorBoardLogger, build_loggers, flatten

# SQLAlchemy deprecations inside MLflow's own SQLite store: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")

CONFIG = {
    "model": {"arch": "faster_rcnn", "pretrained": False},
    "optimizer": {"name": "adamw", "lr": 0.0005, "betas": [0.9, 0.999]},
    "data": {"num_images": 10, "classes": ["a" * 300, "b" * 300]},  # flattened: a 600-character string
    "seed": 7,
}

# Three made-up metrics.csv rows, the last diverged (a NaN must not break either logger).
ROWS = [
    {"epoch": 1, "phase": "train", "lr": 0.0005, "train/loss": 1.25, "train/loss_box_reg": 0.5, "val/loss": 1.5,
     "time_s": 3.25},
    {"epoch": 2, "phase": "train", "lr": 0.00025, "train/loss": 0.875, "train/loss_box_reg": 0.375, "val/loss": 1.125,
     "time_s": 3.5},
    {"epoch": 3, "phase": "train", "lr": 0.000125, "train/loss": 0.625, "train/loss_box_reg": 0.25,
     "val/loss": math.nan, "time_s": 3.0},
]
TAGS = {"lr", "train/loss", "train/loss_box_reg", "val/loss", "time_s"}


def expected(tag: str) -> list[tuple[int, float]]:
    return [(row["epoch"], row[tag]) for row in ROWS]


def assert_series(got: list[tuple[int, float]], tag: str) -> None:
    want = expected(tag)
    assert [step for step, _ in got] == [step for step, _ in want], tag
    for (_, value), (_, target) in zip(got, want, strict=True):
        if math.isnan(target):
            assert math.isnan(value), tag
        else:
            assert value == pytest.approx(target, rel=1e-6), tag


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    # ./mlflow.db and ./mlruns land in the test's own folder.
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "run"
    folder.mkdir()
    return folder


def test_tensorboard_scalars_images_and_text(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = run_dir / "loss_curves.png"
    imsave(curves, np.linspace(0, 1, 12 * 16 * 3).reshape(12, 16, 3))
    logger = TensorBoardLogger(run_dir, CONFIG)
    for row in ROWS:
        logger.log_epoch(row)
    logger.log_images([curves, run_dir / "missing.png"], epoch=3)
    logger.close({"status": "diverged"}, [curves])

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    assert set(events.Tags()["scalars"]) == TAGS
    for tag in TAGS:
        assert_series([(e.step, e.value) for e in events.Scalars(tag)], tag)
    [image] = events.Images("loss_curves")
    assert (image.step, image.width, image.height) == (3, 16, 12)
    # torch's add_text stores tag "config" as "config/text_summary".
    texts = {tag: events.Tensors(f"{tag}/text_summary")[0].tensor_proto.string_val[0].decode()
             for tag in ("config", "status", "summary")}
    assert json.loads(texts["config"])["optimizer.lr"] == 0.0005
    assert texts["status"] == "diverged"
    assert json.loads(texts["summary"]) == {"status": "diverged"}


def test_mlflow_metrics_params_artifacts_and_status(run_dir):
    from mlflow.tracking import MlflowClient

    (run_dir / "metrics.csv").write_text("epoch\n1\n")
    (run_dir / "summary.json").write_text("{}\n")
    artifacts = [run_dir / "metrics.csv", run_dir / "summary.json", run_dir / "loss_curves.png"]  # no PNG: skipped
    # Two runs open at once: each logger owns its run, no global active run to fight over.
    done = MLflowLogger(run_dir, CONFIG, run_name="done")
    failed = MLflowLogger(run_dir, CONFIG, run_name="failed")
    for row in ROWS:
        done.log_epoch(row)
        failed.log_epoch(row)
    done.log_images([run_dir / "loss_curves.png"], epoch=3)
    failed.close({"status": "failed"})
    done.close({"status": "completed"}, artifacts)

    client = MlflowClient(tracking_uri=done.tracking_uri)
    assert done.tracking_uri == f"sqlite:///{run_dir.parent / 'mlflow.db'}"
    for tag in TAGS:
        history = sorted(client.get_metric_history(done.run_id, tag), key=lambda m: m.step)
        assert_series([(m.step, m.value) for m in history], tag)
    run = client.get_run(done.run_id)
    assert set(run.data.metrics) == TAGS
    params = run.data.params
    assert params["optimizer.lr"] == "0.0005"
    assert params["model.arch"] == "faster_rcnn"
    assert params["optimizer.betas"] == "[0.9, 0.999]"
    assert len(params["data.classes"]) == 500
    assert run.info.status == "FINISHED"
    assert run.data.tags["losslab.status"] == "completed"
    assert run.info.run_name == "done"
    assert {a.path for a in client.list_artifacts(done.run_id)} == {"metrics.csv", "summary.json"}
    assert client.get_run(failed.run_id).info.status == "FAILED"
    assert client.list_artifacts(failed.run_id) == []


def test_mlflow_interrupted_is_killed_and_build_loggers(run_dir):
    from mlflow.tracking import MlflowClient

    loggers = build_loggers(["tensorboard", "mlflow", "tensorboard"], run_dir, CONFIG, experiment="sweep")
    assert [type(lg) for lg in loggers] == [TensorBoardLogger, MLflowLogger]
    for lg in loggers:
        lg.log_epoch(ROWS[0])
        lg.close({"status": "interrupted"})
    client = MlflowClient(tracking_uri=loggers[1].tracking_uri)
    run = client.get_run(loggers[1].run_id)
    assert run.info.status == "KILLED"
    assert client.get_experiment(run.info.experiment_id).name == "sweep"
    assert (run_dir / "tensorboard").is_dir()


def test_flatten_nested_dicts_and_lists():
    nested = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": True, "f": None, "g": {}, "h": "x", "i": [{"j": 1}]}
    assert flatten(nested) == {"a.b.c": 1, "a.d": "[1, 2]", "e": True, "f": "None", "g": "{}", "h": "x",
                               "i": "[{'j': 1}]"}


def test_unknown_logger_names_the_valid_ones(tmp_path):
    with pytest.raises(LosslabError, match="nope") as error:
        build_loggers(["nope"], tmp_path, CONFIG)
    assert "tensorboard" in str(error.value) and "mlflow" in str(error.value)
    assert build_loggers([], tmp_path, CONFIG) == []


@pytest.mark.parametrize("name, modules", [("mlflow", ["mlflow"]),
                                           ("tensorboard", ["tensorboard", "torch.utils.tensorboard"])])
def test_missing_library_names_the_extra(tmp_path, monkeypatch, name, modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import` then raises ImportError
    with pytest.raises(LosslabError, match=rf"logger={name} needs the {name} package: pip install 'losslab\[{name}\]'"):
        build_loggers([name], tmp_path, CONFIG)


def test_a_training_run_with_both_loggers_matches_its_metrics_csv(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from conftest import tiny_config
    from losslab import run
    from losslab.reporting.history import read_metrics

    monkeypatch.chdir(tmp_path)  # the default MLflow store is ./mlflow.db
    result = run(tiny_config("model=retinanet", "trainer.max_epochs=2", "logger=all", "trainer.checkpoints=false",
                             run_dir=tmp_path / "run"))
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    columns = [c for c in rows[0] if c != "epoch"]

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for column in columns:
        got = [(e.step, e.value) for e in events.Scalars(column)]
        assert got == [(r["epoch"], pytest.approx(r[column], rel=1e-6)) for r in rows], column
    assert "loss_curves" in events.Tags()["images"]

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    [mlflow_run] = client.search_runs([client.get_experiment_by_name("losslab").experiment_id])
    for column in columns:
        history = sorted((m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id, column))
        assert history == [(r["epoch"], pytest.approx(r[column], rel=1e-6)) for r in rows], column
    assert mlflow_run.data.params["model.arch"] == "retinanet"
    artifacts = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"loss_curves.png", "metrics.csv", "summary.json"} <= artifacts
    assert mlflow_run.info.status == "FINISHED" and result.status == "completed"

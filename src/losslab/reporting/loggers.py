"""Optional experiment loggers beside metrics.csv: TensorBoard event files and MLflow runs.

Each is an extra (`pip install losslab[tensorboard]`, `losslab[mlflow]`); a missing one is a clear LosslabError naming
the extra.

Every logger has the same four methods (see `ExperimentLogger`): the trainer calls `log_epoch` with each metrics.csv
row, `log_images` with the loss-curve PNGs, and `close` once with summary.json's dict and the run's files.
"""

from __future__ import annotations

import json
import logging
import numbers
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from losslab.errors import LosslabError

log = logging.getLogger(__name__)

LOGGERS = ("tensorboard", "mlflow")

# MLflow >= 2.x accepts 6000 characters, but older tracking servers reject anything over 500; a config value that
# long is a list nobody reads in the UI anyway, and config.yaml in the run folder keeps the full value.
PARAM_VALUE_MAX = 500
# The most params one MLflow log_batch call accepts.
PARAM_BATCH_MAX = 100

# summary.json "status" -> MLflow run status; the others (completed, stopped_early, diverged) ran to their end.
MLFLOW_STATUS = {"failed": "FAILED", "interrupted": "KILLED"}


class ExperimentLogger(Protocol):
    def log_epoch(self, row: dict) -> None: ...

    def log_images(self, paths: list[Path], epoch: int) -> None: ...

    def close(self, summary: dict, artifacts: Sequence[Path] = ()) -> None: ...


def flatten(config: Mapping, prefix: str = "") -> dict[str, str | float | int | bool]:
    """Nested mappings as one level of "a.b.c" keys; lists, None and other values as strings.

    Works on plain dicts and on OmegaConf DictConfigs (both are Mappings).
    """
    flat: dict[str, str | float | int | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        elif isinstance(value, Sequence):
            # ListConfig prints like a list once made one.
            flat[name] = str(list(value))
        else:
            flat[name] = str(value)
    return flat


def numeric_columns(row: dict) -> dict[str, float]:
    """The row's numeric columns but "epoch" (the step itself); strings such as "phase" and bools are not metrics."""
    return {key: float(value) for key, value in row.items()
            if key != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool)}


def build_loggers(names: Sequence[str] | str, run_dir: Path, config: Mapping, mlflow_uri: str | None = None,
                  experiment: str = "losslab") -> list[ExperimentLogger]:
    """One logger per name ("tensorboard", "mlflow"), in order; duplicates count once."""
    if isinstance(names, str):
        # A comma-separated string from the command line rather than a list of single letters.
        names = names.split(",")
    wanted = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    unknown = [n for n in wanted if n not in LOGGERS]
    if unknown:
        # Checked before any logger starts so that a typo does not leave an MLflow run open.
        raise LosslabError(f"unknown logger {', '.join(map(repr, unknown))}; valid loggers: {', '.join(LOGGERS)}")
    loggers: list[ExperimentLogger] = []
    try:
        for name in wanted:
            if name == "tensorboard":
                loggers.append(TensorBoardLogger(run_dir, config))
            else:
                loggers.append(MLflowLogger(run_dir, config, tracking_uri=mlflow_uri, experiment=experiment))
    except Exception:
        for started in loggers:
            started.close({"status": "failed"})
        raise
    return loggers


def _missing(name: str) -> LosslabError:
    return LosslabError(f"logger={name} needs the {name} package: pip install 'losslab[{name}]'")


class TensorBoardLogger:
    """Event files in run_dir/tensorboard: every metrics.csv column as a scalar, the loss curves as images."""

    def __init__(self, run_dir: Path, config: Mapping):
        try:
            # torch.utils.tensorboard may already be imported (and cached) without the package it wraps: ask for it.
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise _missing("tensorboard") from e
        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._closed = False
        self._writer.add_text("config", _as_code(flatten(config)))

    def log_epoch(self, row: dict) -> None:
        for tag, value in numeric_columns(row).items():
            self._writer.add_scalar(tag, value, global_step=row["epoch"])
        # Epochs are minutes apart: show each one now instead of at the writer's 2-minute flush.
        self._writer.flush()

    def log_images(self, paths: list[Path], epoch: int) -> None:
        from matplotlib.image import imread

        for path in map(Path, paths):
            if not path.is_file():
                log.debug("no image %s to log", path)
                continue
            image = imread(path)  # PNG: float32 in [0, 1], H x W (grey) or H x W x 3/4
            self._writer.add_image(path.stem, image, global_step=epoch, dataformats="HW" if image.ndim == 2 else "HWC")
        self._writer.flush()

    def close(self, summary: dict, artifacts: Sequence[Path] = ()) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.add_text("status", str(summary.get("status", "unknown")))
        self._writer.add_text("summary", _as_code(summary))
        self._writer.close()


class MLflowLogger:
    """One MLflow run per training run: the flattened config as params, every metrics.csv column as a metric, and
    the run's files as artifacts at the end.

    Metric keys keep their "/" ("train/loss"): MLflow allows slashes in metric and param names.
    Uses an MlflowClient rather than mlflow.start_run so that several loggers (a sweep, tests) never share the
    module-global active run.
    """

    def __init__(self, run_dir: Path, config: Mapping, tracking_uri: str | None = None, experiment: str = "losslab",
                 run_name: str | None = None):
        try:
            # Submodules may be cached from an earlier import even when mlflow itself is gone: ask for it.
            import mlflow  # noqa: F401
            from mlflow.entities import Metric, Param
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise _missing("mlflow") from e
        self._metric = Metric
        run_dir = Path(run_dir)
        # MLflow 3's own default: a SQLite file, with artifacts in ./mlruns. MLflow >= 3.x refuses a plain ./mlruns
        # file store unless MLFLOW_ALLOW_FILE_STORE=true. Absolute, so a later chdir does not move the run.
        self.tracking_uri = tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
        try:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment_id = self._experiment_id(experiment, MlflowException)
            run = self._client.create_run(experiment_id, run_name=run_name or run_dir.name,
                                          tags={"losslab.run_dir": str(run_dir.resolve())})
        except (MlflowException, ImportError) as e:
            raise LosslabError(f"logger=mlflow could not start a run at {self.tracking_uri}: {e}") from e
        self.run_id = run.info.run_id
        self._closed = False
        params = [Param(key, _param_value(value)) for key, value in flatten(config).items()]
        for start in range(0, len(params), PARAM_BATCH_MAX):
            self._client.log_batch(self.run_id, params=params[start:start + PARAM_BATCH_MAX])
        log.info("MLflow run %s in experiment %r at %s", self.run_id, experiment, self.tracking_uri)

    def _experiment_id(self, name: str, mlflow_exception: type[Exception]) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is None:
            try:
                return self._client.create_experiment(name)
            except mlflow_exception:
                # Another run of a sweep created it between the lookup and now.
                found = self._client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise LosslabError(f"MLflow experiment {name!r} is deleted: restore it (mlflow experiments restore "
                               f"--experiment-id {found.experiment_id}) or log to another experiment name")
        return found.experiment_id

    def log_epoch(self, row: dict) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(key, value, now, row["epoch"]) for key, value in numeric_columns(row).items()]
        if metrics:
            self._client.log_batch(self.run_id, metrics=metrics)

    def log_images(self, paths: list[Path], epoch: int) -> None:
        # The PNG is redrawn every epoch; one copy as an artifact at close is enough.
        pass

    def close(self, summary: dict, artifacts: Sequence[Path] = ()) -> None:
        if self._closed:
            return
        self._closed = True
        status = str(summary.get("status", "unknown"))
        try:
            # FINISHED covers completed, stopped_early and diverged: the tag tells them apart.
            self._client.set_tag(self.run_id, "losslab.status", status)
            for path in map(Path, artifacts):
                if path.is_file():
                    self._client.log_artifact(self.run_id, str(path))
                else:
                    log.debug("no artifact %s to log", path)
        finally:
            self._client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(status, "FINISHED"))


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= PARAM_VALUE_MAX else text[:PARAM_VALUE_MAX - 3] + "..."


def _as_code(payload: Mapping) -> str:
    # TensorBoard renders text as Markdown: indenting by 4 spaces keeps the JSON a verbatim code block.
    text = json.dumps(dict(payload), indent=2, default=str)
    return "\n".join("    " + line for line in text.splitlines())

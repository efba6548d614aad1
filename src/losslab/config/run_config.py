"""A finished run's own config, read back from its folder."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from omegaconf import OmegaConf

from losslab.config.compose import compose_config
from losslab.config.schema import EvalConfig, ModelConfig, SegmentationModelConfig
from losslab.errors import LosslabError


def read_run_config(run_dir: Path) -> dict:
    """RUN_DIR/.hydra/config.yaml resolved to plain values, with the model and eval keys added to losslab since
    the run was trained set to their current defaults (so older runs keep loading)."""
    config_path = Path(run_dir) / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise LosslabError(f"{config_path} does not exist; expected a losslab run folder (outputs/DATE/TIME) "
                           f"holding .hydra/config.yaml and checkpoints/.")
    cfg = OmegaConf.load(config_path)
    task = cfg.get("task") or "detection"  # runs from before tasks existed are detection runs
    model_schema = SegmentationModelConfig if task == "segmentation" else ModelConfig
    completed = {"model": model_schema, "eval": EvalConfig}  # the sections inference reads
    if any({field.name for field in fields(schema)} - set(cfg.get(section, {}))
           for section, schema in completed.items()):
        # Composing costs a second or two, so only runs from before a key existed pay for it.
        arch = cfg.get("model", {}).get("arch", "faster_rcnn")
        current = compose_config([f"task={task}", f"model={arch}"])
        for section in completed:
            cfg[section] = OmegaConf.merge(OmegaConf.to_container(current[section]), cfg.get(section, {}))
    return OmegaConf.to_container(cfg, resolve=True)

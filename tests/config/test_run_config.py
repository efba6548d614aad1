"""A finished run's config read back as it is, without composing (Hydra cannot compose inside `train`, which reads
a run's config to resume it or to start from its weights); older ones completed with the defaults of their model
option, read from its files."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from losslab import compose_config
from losslab.config import run_config
from losslab.errors import LosslabError


def write_run_config(run_dir, cfg) -> None:
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")


def test_a_complete_config_is_read_as_it_is_resolved(tmp_path, monkeypatch):
    cfg = compose_config(["model=retinanet", "trainer.max_epochs=3"])
    write_run_config(tmp_path, cfg)
    monkeypatch.setattr("losslab.config.compose.compose_config", lambda *args: pytest.fail("composed a config"))
    read = run_config.read_run_config(tmp_path)
    assert read["model"]["arch"] == "retinanet"
    assert read["scheduler"]["T_max"] == 3  # interpolations resolved


@pytest.mark.parametrize(("task", "arch", "added"), [("detection", "mask_rcnn", "rpn_post_nms_top_n_test"),
                                                     ("segmentation", "fcn", "aux_loss")])
def test_model_keys_added_since_a_run_get_their_current_defaults(tmp_path, task, arch, added):
    overrides = [f"task={task}", f"model={arch}", "model.min_size=96", "model.max_size=96"]
    cfg = OmegaConf.to_container(compose_config(overrides))
    del cfg["model"][added]  # a run from before that key existed
    del cfg["eval"]["backend"]
    write_run_config(tmp_path, OmegaConf.create(cfg))
    read = run_config.read_run_config(tmp_path)
    current = compose_config([f"task={task}", f"model={arch}"])
    assert read["model"][added] == current.model[added] and read["eval"]["backend"] == current.eval.backend
    assert read["model"]["min_size"] == 96 and read["model"]["arch"] == arch


def test_a_folder_without_a_config_is_not_a_run(tmp_path):
    with pytest.raises(LosslabError, match="expected a losslab run folder"):
        run_config.read_run_config(tmp_path)

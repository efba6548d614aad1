"""A finished run's config read back: complete ones as they are (no composition), older ones completed with the
defaults of their model option."""

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
    monkeypatch.setattr(run_config, "compose_config", lambda *args: pytest.fail("composed a complete config"))
    read = run_config.read_run_config(tmp_path)
    assert read["model"]["arch"] == "retinanet"
    assert read["scheduler"]["T_max"] == 3  # interpolations resolved


def test_model_keys_added_since_a_run_get_their_current_defaults(tmp_path):
    cfg = OmegaConf.to_container(compose_config(["model=mask_rcnn", "model.min_size=96", "model.max_size=96"]))
    del cfg["model"]["rpn_post_nms_top_n_test"]  # a run from before that key existed
    write_run_config(tmp_path, OmegaConf.create(cfg))
    read = run_config.read_run_config(tmp_path)
    assert read["model"]["rpn_post_nms_top_n_test"] == compose_config(["model=mask_rcnn"]).model.rpn_post_nms_top_n_test
    assert read["model"]["min_size"] == 96 and read["model"]["arch"] == "mask_rcnn"


def test_a_folder_without_a_config_is_not_a_run(tmp_path):
    with pytest.raises(LosslabError, match="expected a losslab run folder"):
        run_config.read_run_config(tmp_path)

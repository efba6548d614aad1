"""What a run's set-up reports about the losses it built."""

from __future__ import annotations

import logging

import pytest

from conftest import tiny_config
from losslab.config.validation import validate
from losslab.data.datasets import count_classes
from losslab.distributed import SINGLE_PROCESS
from losslab.training.session import setup


def test_auto_class_weights_are_logged_and_a_class_without_train_objects_is_warned_about(tmp_path, caplog):
    # 8 images split with seed 1 leave no square in the train split.
    cfg = tiny_config("loss=weighted_ce", "data.num_images=8", "split.seed=1", run_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="losslab.training.session"):
        session = setup(validate(cfg), tmp_path, SINGLE_PROCESS)
    assert session.data.classes == ("circle", "square", "triangle")
    assert count_classes(session.data.train, 3) == [2, 0, 4]
    # n = 6 objects in K = 2 classes: 6 / (2 * 2) and 6 / (2 * 4); background 1; square, never a training target, 1.
    assert session.class_weights == pytest.approx([1.0, 1.5, 1.0, 0.75])
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "weighted_ce" in r.getMessage()]
    assert info and "background 1, circle 1.5 (2 objects), square 1 (0 objects), triangle 0.75 (4 objects)" in info[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # The run's data audit says it too, once, before the class weights do.
    assert len(warnings) == 2 and "data audit: the train split has no objects of square" in warnings[0]
    assert "no object of square; weight 1" in warnings[1]


def test_a_retinanet_from_random_weights_at_the_default_lr_is_warned_about_once(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="losslab.training.session"):
        setup(validate(tiny_config("model=retinanet", run_dir=tmp_path)), tmp_path, SINGLE_PROCESS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("RetinaNet from random weights at optimizer.lr=0.0005")

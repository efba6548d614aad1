"""split=random | stratified | predefined: disjoint, repeatable splits, and reusing an earlier run's split.json."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import tiny_config
from losslab import build_data, compose_config, run
from losslab.config.validation import validate
from losslab.data.datasets import build_datasets
from losslab.data.split import SPLITS, random_split, split_sizes, stratified_split, write_split
from losslab.errors import LosslabError

SHAPES = {"name": "shapes", "num_images": 24, "image_size": 32, "min_objects": 1, "max_objects": 3, "seed": 0}
RATIOS = {"train": 0.5, "val": 0.25, "test": 0.25}


def multi_label_images(count: int = 400, seed: int = 0) -> dict[int, set[int]]:
    """Images holding each of 6 classes with falling frequency (60% .. 3%); some hold none."""
    rng = np.random.default_rng(seed)
    frequencies = [0.6, 0.4, 0.2, 0.1, 0.05, 0.03]
    return {i: {c for c, f in enumerate(frequencies, start=1) if rng.random() < f} for i in range(count)}


def assert_disjoint_and_complete(split: dict[str, list], ids: list) -> None:
    chosen = [image_id for name in SPLITS for image_id in split[name]]
    assert len(chosen) == len(set(chosen)), "an image is in two splits"
    assert sorted(chosen) == sorted(ids)


@pytest.mark.parametrize("kind", ["random", "stratified"])
def test_no_image_is_in_two_splits_and_the_same_seed_gives_the_same_split(kind):
    split_options = {"name": kind, **RATIOS, "seed": 3}
    first = build_datasets(SHAPES, split_options)
    assert_disjoint_and_complete(first.split_ids, list(range(24)))
    assert build_datasets(SHAPES, split_options).split_ids == first.split_ids
    assert build_datasets(SHAPES, {**split_options, "seed": 4}).split_ids != first.split_ids
    assert [first.train.indices, first.val.indices] == [first.split_ids["train"], first.split_ids["val"]]


def test_stratified_split_puts_every_class_in_every_split_in_proportion():
    labels = multi_label_images()
    split = stratified_split(labels, **RATIOS, seed=0)
    assert_disjoint_and_complete(split, list(labels))
    assert split == stratified_split(labels, **RATIOS, seed=0)
    assert [len(split[name]) for name in SPLITS] == pytest.approx([200, 100, 100], abs=2)
    def worst_deviation(split: dict[str, list]) -> float:
        """The largest gap, in images, between a class's count in a split and its share by the ratios."""
        gaps = []
        for label in range(1, 7):
            having = sum(label in labels[i] for i in labels)
            gaps += [abs(sum(label in labels[i] for i in split[name]) - RATIOS[name] * having) for name in SPLITS]
        return max(gaps)

    # Tolerance: one image per class and split (what rounding a class's share to whole images needs).
    assert worst_deviation(split) <= 1.0
    assert all(any(label in labels[i] for i in split[name]) for label in range(1, 7) for name in SPLITS)
    assert worst_deviation(random_split(list(labels), **RATIOS, seed=0)) > 2  # what stratifying avoids


def test_stratified_ratios_below_one_leave_images_out_and_a_zero_ratio_stays_empty():
    labels = multi_label_images(100)
    split = stratified_split(labels, train=0.5, val=0.3, test=0.0, seed=1)
    assert split["test"] == [] and len(split["train"]) + len(split["val"]) == pytest.approx(80, abs=2)
    assert not set(split["train"]) & set(split["val"])


def test_a_split_that_would_be_empty_says_which_ratio_to_change():
    with pytest.raises(LosslabError, match="split.val=0.05 of 4 images leaves the val split empty; raise split.val"):
        stratified_split({i: {1} for i in range(4)}, train=0.9, val=0.05, test=0.05, seed=0)
    with pytest.raises(LosslabError, match="split.train=0.0 of 24 images leaves the train split empty"):
        build_datasets(SHAPES, {"name": "random", "train": 0.0, "val": 0.5, "test": 0.5, "seed": 0})


@pytest.mark.parametrize(
    ("n", "ratios", "sizes"),
    [
        (3, (0.34, 0.33, 0.33), (1, 1, 1)),  # rounded down: 1, 0, 0 (val and test empty)
        (10, (0.5, 0.25, 0.25), (5, 3, 2)),  # shares 5, 2.5, 2.5: the tie goes to the earlier split
        (7, (0.6, 0.2, 0.2), (4, 2, 1)),  # shares 4.2, 1.4, 1.4
        (20, (0.9, 0.03, 0.07), (18, 1, 1)),  # val's 0.6 image rounds to 1, test's 1.4 to 1
        (10, (0.96, 0.02, 0.02), (8, 1, 1)),  # shares 9.6, 0.2, 0.2: a positive ratio still gets one image
        (100, (0.3, 0.1, 0.0), (30, 10, 0)),  # the other 60 are left out
        (10, (0.3, 0.04, 0.0), (3, 1, 0)),  # val's image comes from the left-out ones, not from train
    ],
)
def test_split_sizes_follow_the_largest_remainders_and_give_every_split_an_image(n, ratios, sizes):
    assert tuple(split_sizes(n, dict(zip(SPLITS, ratios, strict=True))).values()) == sizes
    split = random_split(list(range(n)), *ratios, seed=0)
    assert tuple(len(split[name]) for name in SPLITS) == sizes


@pytest.mark.parametrize(
    ("n", "ratios", "advice"),
    [
        (2, (0.34, 0.33, 0.33), "split.test=0.33 of 2 images leaves the test split empty; with 2 images there is no "
                                "image left to test on: use split.train=0.5 split.val=0.5 split.test=0."),
        (1, (0.5, 0.5, 0.0), "split.val=0.5 of 1 image leaves the val split empty; a run needs at least 2 images"),
    ],
)
def test_impossible_ratios_are_refused_with_ratios_that_work(n, ratios, advice):
    with pytest.raises(LosslabError, match=re.escape(advice)):
        random_split(list(range(n)), *ratios, seed=0)
    assert [len(part) for part in random_split([0, 1], 0.5, 0.5, 0.0, seed=0).values()] == [1, 1, 0]  # the advice


def test_a_later_run_reuses_the_split_of_an_earlier_one(tmp_path):
    first = run(tiny_config("split=stratified", "trainer.checkpoints=false", run_dir=tmp_path / "first"))
    saved = json.loads((tmp_path / "first" / "split.json").read_text())
    assert first.status == "completed" and saved["seed"] == 0
    assert_disjoint_and_complete(saved, list(range(10)))
    for source in (tmp_path / "first", tmp_path / "first" / "split.json"):
        reused = build_data(tiny_config("split=predefined", f"split.from_run={source}", "split.seed=5"))
        assert reused.split_ids == {name: saved[name] for name in SPLITS}


def test_a_saved_split_must_match_the_dataset(tmp_path):
    write_split(tmp_path / "split.json", random_split(list(range(24)), **RATIOS, seed=0), seed=0)
    predefined = {"name": "predefined", "files": {}, "from_run": str(tmp_path)}
    with pytest.raises(LosslabError, match=r"split.from_run=.*: 14 of its image ids are not in this dataset: \d+, "):
        build_datasets({**SHAPES, "num_images": 10}, predefined)
    write_split(tmp_path / "split.json", {"train": [1, 2, 3], "val": [3, 4], "test": []}, seed=0)
    with pytest.raises(LosslabError, match=r"1 image\(s\) are in two splits or twice in one: 3 \(train and val\)"):
        build_datasets(SHAPES, predefined)
    (tmp_path / "split.json").write_text("{")
    with pytest.raises(LosslabError, match="split.json is not valid JSON"):
        build_datasets(SHAPES, predefined)
    with pytest.raises(LosslabError, match="nowhere does not exist; expected a run folder holding split.json"):
        build_datasets(SHAPES, {**predefined, "from_run": str(tmp_path / "nowhere")})


@pytest.mark.parametrize(("overrides", "message"), [
    (["split=predefined"], "split=predefined needs either split.files.train=FILE and split.files.val=FILE .*neither"),
    (["split=predefined", "split.from_run=x", "split.files.train=a"], "not both"),
    (["split=predefined", "split.files.train=a"], "split.files gives train only"),
    (["split=stratified", "split.train=0.9"], r"sum to at most 1 \(they sum to 1.4\)"),
    (["split.name=halves"], "split.name=halves: expected one of random, stratified, predefined"),
    (["data=coco", "data.images=x"], "data=coco needs data.images=DIR and data.annotations=FILE.json; not set: "
                                     "data.annotations"),
    (["data=voc"], "data=voc needs data.root=DIR; not set: data.root"),
])
def test_split_and_data_settings_are_checked_before_anything_runs(overrides, message):
    with pytest.raises(LosslabError, match=message):
        validate(compose_config(overrides))


def test_coco_annotations_may_come_from_split_files_instead():
    validate(compose_config(["data=coco", "data.images=x", "split=predefined", "split.files.train=a",
                             "split.files.val=b"]))

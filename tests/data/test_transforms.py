"""Train-time augmentations: every operation keeps boxes, masks and per-object keys consistent with the image."""

from __future__ import annotations

import logging
import pickle
import re

import pytest
import torch
from matplotlib.image import imread
from omegaconf import OmegaConf

from losslab.commands.show_augment import draw_augmentations, show_augment
from losslab.config.compose import config_dir
from losslab.data.augment_options import (
    DEFAULTS,
    GEOMETRIC,
    MIXING,
    PHOTOMETRIC,
    RULES,
    AugmentConfig,
    validate_augment,
)
from losslab.data.mixing import AugmentedDataset, augmented, copy_paste, mosaic
from losslab.data.shapes import ShapesDataset
from losslab.data.transforms import BUILDERS, build_train_transform, mask_extents
from losslab.errors import LosslabError

CLASSES = ("circle", "square", "triangle")

# Each geometric operation alone, at full strength; sizes make the output differ from the 48x72 input.
GEOMETRIC_CASES = {
    "resize": {"size": [40, 64]},
    "resize_shorter_side": {"size": [36]},
    "smallest_max_size": {"max_size": 36},
    "longest_max_size": {"max_size": 60},
    "random_sized_crop": {},
    "random_sized_crop_to_size": {"size": [32, 48], "scale": [0.1, 0.5]},
    "random_crop": {"size": [32, 40]},
    "random_crop_padded": {"size": [64, 96]},
    "center_crop": {"size": [30, 40]},
    "center_crop_padded": {"size": [60, 90]},
    "shift_scale_rotate": {"shift": 0.2, "scale": 0.3, "degrees": 30.0},
    "rotate": {"degrees": 45.0},
    "shear": {"degrees": 30.0},
    "horizontal_flip": {},
    "vertical_flip": {},
}
OUTPUT_SIZES = {"resize": (40, 64), "resize_shorter_side": (36, 54), "smallest_max_size": (36, 54),
                "longest_max_size": (40, 60), "random_sized_crop": (48, 72), "random_sized_crop_to_size": (32, 48),
                "random_crop": (32, 40), "random_crop_padded": (64, 96), "center_crop": (30, 40),
                "center_crop_padded": (60, 90)}


def operation(case: str) -> str:
    """The operation a case of GEOMETRIC_CASES exercises."""
    return next(name for name in GEOMETRIC if case.startswith(name))


def synthetic_sample(height: int = 48, width: int = 72, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """A non-square image with five objects, three of them touching the border, and extra per-object keys."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    masks = torch.stack([
        (xx < 10) & (yy >= 5) & (yy < 20),  # on the left edge
        (xx >= width - 12) & (yy >= height - 8),  # in the bottom-right corner
        (xx - width // 2) ** 2 + (yy - height // 2) ** 2 <= 64,  # a disc in the middle
        (yy < 3) & (xx >= 20) & (xx < 50),  # a thin strip along the top edge
        (xx - 20).abs() + (yy - 34).abs() <= 6,  # a diamond
    ]).to(torch.uint8)
    count = len(masks)
    target = {
        "boxes": mask_extents(masks),
        "labels": torch.tensor([1, 2, 3, 1, 2]),
        "masks": masks,
        "image_id": "synthetic",
        "iscrowd": torch.zeros(count, dtype=torch.int64),
        "object_id": torch.arange(count),  # tells which input object an output row came from
    }
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed)), target


def without_masks(sample: tuple[torch.Tensor, dict]) -> tuple[torch.Tensor, dict]:
    image, target = sample
    return image, {key: value for key, value in target.items() if key != "masks"}


def mask_extent(mask: torch.Tensor) -> list[int]:
    rows = torch.where(mask.any(dim=1))[0]
    cols = torch.where(mask.any(dim=0))[0]
    return [cols[0].item(), rows[0].item(), cols[-1].item() + 1, rows[-1].item() + 1]


def assert_consistent(image: torch.Tensor, target: dict, input_labels: torch.Tensor | None = None) -> None:
    """Boxes inside the image with positive size, every per-object key aligned; with masks, boxes fit them."""
    height, width = image.shape[-2:]
    boxes = target["boxes"]
    assert type(boxes) is torch.Tensor and boxes.dtype == torch.float32 and boxes.shape[1:] == (4,)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all(), boxes
    assert (boxes[:, 2:] - boxes[:, :2] >= 1).all(), boxes
    assert len(target["labels"]) == len(boxes)
    if "object_id" in target:
        assert len(target["iscrowd"]) == len(target["object_id"]) == len(boxes)
        assert torch.equal(target["labels"], input_labels[target["object_id"]])
    if "masks" in target:
        masks = target["masks"]
        assert masks.shape == (len(boxes), height, width) and masks.dtype == torch.uint8
        for box, mask in zip(boxes.tolist(), masks, strict=True):
            assert mask.any(), "an object with an empty mask was kept"
            assert all(abs(b - e) <= 1 for b, e in zip(box, mask_extent(mask), strict=True)), (box, mask_extent(mask))


@pytest.mark.parametrize("case", GEOMETRIC_CASES)
def test_geometric_operation_keeps_boxes_fitted_to_masks(case):
    transform = build_train_transform({operation(case): {"p": 1.0, **GEOMETRIC_CASES[case]}})
    image, target = synthetic_sample()
    for seed in range(4):
        torch.manual_seed(seed)
        out_image, out_target = transform(image, target)
        assert out_image.dtype == torch.float32 and out_image.shape[0] == 3
        assert out_target["image_id"] == "synthetic"
        assert_consistent(out_image, out_target, target["labels"])
        if case in OUTPUT_SIZES:
            assert tuple(out_image.shape[-2:]) == OUTPUT_SIZES[case]


@pytest.mark.parametrize("case", GEOMETRIC_CASES)
def test_geometric_operation_on_box_only_data(case):
    transform = build_train_transform({operation(case): {"p": 1.0, **GEOMETRIC_CASES[case]}})
    image, target = without_masks(synthetic_sample())
    for seed in range(4):
        torch.manual_seed(seed)
        out_image, out_target = transform(image, target)
        assert "masks" not in out_target
        assert_consistent(out_image, out_target, target["labels"])


def test_flip_moves_image_boxes_and_masks_exactly():
    image, target = synthetic_sample()
    flipped, flipped_target = build_train_transform({"horizontal_flip": {"p": 1.0}})(image, target)
    assert torch.equal(flipped, image.flip(-1))
    assert torch.equal(flipped_target["masks"], target["masks"].flip(-1))
    width = image.shape[-1]
    expected = target["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor([width, 0, width, 0])
    assert torch.equal(flipped_target["boxes"], expected)


def test_objects_leaving_the_image_are_dropped_with_their_keys():
    image, target = synthetic_sample()
    cropped, cropped_target = build_train_transform({"center_crop": {"p": 1.0, "size": [20, 20]}})(image, target)
    assert cropped_target["object_id"].tolist() == [2]  # only the central disc is left
    assert_consistent(cropped, cropped_target, target["labels"])


@pytest.mark.parametrize("name", PHOTOMETRIC)
def test_photometric_operation_changes_pixels_only(name):
    image, target = synthetic_sample()
    torch.manual_seed(0)
    out_image, out_target = build_train_transform({name: {"p": 1.0}})(image, target)
    assert out_image.shape == image.shape and out_image.dtype == torch.float32
    assert out_image.min() >= 0 and out_image.max() <= 1
    assert not torch.equal(out_image, image)
    for key in ("boxes", "labels", "masks", "iscrowd", "object_id"):
        assert torch.equal(out_target[key], target[key])


def test_to_gray_keeps_three_equal_channels():
    image, target = synthetic_sample()
    gray, _ = build_train_transform({"to_gray": {"p": 1.0}})(image, target)
    assert gray.shape == image.shape and torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])


def test_every_operation_off_means_no_transform():
    assert build_train_transform({}) is None
    assert build_train_transform(OmegaConf.to_container(OmegaConf.structured(AugmentConfig))) is None
    dataset = ShapesDataset(num_images=2, image_size=32, min_objects=1, max_objects=2, seed=0)
    assert augmented(dataset, {}) is dataset
    assert augmented(dataset, {"horizontal_flip": {"p": 0.0}, "mosaic": {"p": 0.0}}) is dataset


def test_schema_order_is_mixing_geometric_photometric():
    assert list(DEFAULTS) == [*MIXING, *GEOMETRIC, *PHOTOMETRIC]
    assert set(BUILDERS) == {*GEOMETRIC, *PHOTOMETRIC} and set(RULES) <= set(DEFAULTS)
    assert all(options["p"] == 0.0 for options in DEFAULTS.values())


class ListDataset(torch.utils.data.Dataset):
    """Fixed samples, as a dataset with class names."""

    classes = CLASSES

    def __init__(self, samples: list):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return self.samples[index]


MIXED_SIZES = [(48, 72), (64, 40), (30, 30), (80, 100)]


@pytest.mark.parametrize("center", [(36, 24), (1, 1), (71, 47), (10, 40)])
@pytest.mark.parametrize("masks", [True, False])
def test_mosaic_of_mixed_sizes(center, masks):
    samples = [synthetic_sample(height, width, seed) for seed, (height, width) in enumerate(MIXED_SIZES)]
    samples = samples if masks else [without_masks(sample) for sample in samples]
    image, target = mosaic(samples, center)
    assert image.shape == (3, 48, 72)
    assert target["image_id"] == "synthetic"
    assert_consistent(image, target, samples[0][1]["labels"])
    assert ("masks" in target) == masks


def test_mosaic_puts_each_image_in_its_quadrant():
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    samples = [(torch.full((3, 40, 60), value), empty) for value in (0.1, 0.2, 0.3, 0.4)]
    image, _ = mosaic(samples, (20, 30))
    corners = [image[0, 0, 0], image[0, 0, 59], image[0, 39, 0], image[0, 39, 59], image[0, 29, 19], image[0, 30, 20]]
    assert [value.item() for value in corners] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.1, 0.4])


def test_mosaic_and_copy_paste_through_the_dataset():
    dataset = ShapesDataset(num_images=6, image_size=48, min_objects=2, max_objects=4, seed=0)
    view = augmented(dataset, {"mosaic": {"p": 1.0}, "copy_paste": {"p": 1.0, "max_objects": 2}})
    assert isinstance(view, AugmentedDataset) and view.classes == dataset.classes and len(view) == len(dataset)
    torch.manual_seed(0)
    for index in range(3):
        image, target = view[index]
        assert image.shape == (3, 48, 48)
        assert_consistent(image, target)
        assert set(target["labels"].tolist()) <= {1, 2, 3}
        assert len(target["labels"]) > len(dataset[index][1]["labels"])  # four images' objects, and pasted ones
    pickle.dumps(view)  # DataLoader workers may need to pickle it


def test_augmented_dataset_is_reproducible_with_torch_seed():
    dataset = ShapesDataset(num_images=4, image_size=32, min_objects=1, max_objects=3, seed=0)
    view = augmented(dataset, {"mosaic": {"p": 0.5}, "rotate": {"p": 0.5}, "color_jitter": {"p": 0.5}})
    draws = []
    for _ in range(2):
        torch.manual_seed(3)
        draws.append([view[index][0] for index in range(4)])
    assert all(torch.equal(a, b) for a, b in zip(*draws, strict=True))


def test_copy_paste_covers_and_drops_occluded_objects():
    image, target = synthetic_sample()
    donor_image, donor_target = synthetic_sample(36, 54, seed=1)  # resized to 48x72 when pasted
    pasted_image, pasted = copy_paste((image, target), (donor_image, donor_target), torch.tensor([2, 4]), 0.3)
    assert pasted_image.shape == image.shape
    assert_consistent(pasted_image, {key: value for key, value in pasted.items() if key != "object_id"})
    assert pasted["labels"].tolist()[-2:] == [3, 2] and pasted["object_id"].tolist()[-2:] == [2, 4]
    assert 2 not in pasted["object_id"].tolist()[:-2]  # the disc is fully covered by the donor's larger disc
    cover = pasted["masks"][-2:].bool().any(dim=0)
    assert not (pasted["masks"][:-2].bool() & cover).any()  # pasted pixels were cut out of the other masks
    assert torch.equal(pasted_image[:, ~cover], image[:, ~cover])


def test_copy_paste_over_everything_keeps_only_pasted_objects():
    image, target = synthetic_sample()
    donor_target = {"boxes": torch.tensor([[0.0, 0.0, 72.0, 48.0]]), "labels": torch.tensor([3]),
                    "masks": torch.ones(1, 48, 72, dtype=torch.uint8), "iscrowd": torch.zeros(1, dtype=torch.int64),
                    "object_id": torch.tensor([9]), "image_id": "donor"}
    pasted_image, pasted = copy_paste((image, target), (torch.zeros(3, 48, 72), donor_target), torch.tensor([0]), 0.3)
    assert pasted["labels"].tolist() == [3] and pasted["boxes"].tolist() == [[0.0, 0.0, 72.0, 48.0]]
    assert pasted["image_id"] == "synthetic" and not pasted_image.any()


def test_copy_paste_is_skipped_on_box_only_data_with_one_warning(caplog):
    samples = [without_masks(synthetic_sample(seed=seed)) for seed in range(3)]
    view = augmented(ListDataset(samples), {"copy_paste": {"p": 1.0}})
    with caplog.at_level(logging.WARNING):
        items = [view[index] for index in range(3)]
    assert all(torch.equal(item[0], sample[0]) for item, sample in zip(items, samples, strict=True))
    assert sum("copy_paste needs masks" in record.message for record in caplog.records) == 1


def test_validate_augment_names_every_problem():
    problems = validate_augment({
        "rotate": {"p": 1.5},
        "horizontal_flip": 0.5,
        "blur": {"p": 0.5, "kernel_size": 4},
        "random_crop": {"p": 0.5},
        "center_crop": {"p": 0.0},  # off: its missing size does not matter
        "teleport": {"p": 1.0},
        "shear": {"p": 0.5, "angle": 3},
        "color_jitter": {"p": "often"},
    })
    assert problems == [
        "augment.rotate.p=1.5: expected a probability in [0, 1]",
        "augment.horizontal_flip=0.5: expected its settings, e.g. augment.horizontal_flip.p=0.5",
        "augment.blur.kernel_size=4: expected an odd positive whole number",
        "augment.random_crop.size=None: expected [height, width] or [side] in pixels",
        f"augment.teleport: unknown operation; expected one of {', '.join(DEFAULTS)}",
        "augment.shear.angle: unknown parameter; expected one of p, degrees",
        "augment.color_jitter.p=often: expected a probability in [0, 1]",
    ]
    assert validate_augment(OmegaConf.to_container(OmegaConf.structured(AugmentConfig))) == []
    with pytest.raises(LosslabError, match=r"augment\.rotate\.p=-0\.1"):
        build_train_transform({"rotate": {"p": -0.1}})


def preset(name: str) -> dict:
    """conf/augment/<name>.yaml merged onto the schema, as Hydra composes it."""
    options = OmegaConf.load(config_dir() / "augment" / f"{name}.yaml")
    assert list(options.pop("defaults")) == ["/schema/augment@_here_"]
    return OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(AugmentConfig), options))


def test_presets_merge_onto_the_schema():
    presets = {name: preset(name) for name in ("none", "basic", "strong")}
    assert all(validate_augment(options) == [] for options in presets.values())
    assert build_train_transform(presets["none"]) is None
    on = {name: [op for op, options in presets[name].items() if options["p"] > 0] for name in presets}
    assert on == {"none": [], "basic": ["horizontal_flip"],
                  "strong": ["mosaic", "shift_scale_rotate", "horizontal_flip", "color_jitter", "to_gray", "blur",
                             "gaussian_noise"]}
    dataset = ShapesDataset(num_images=4, image_size=48, min_objects=1, max_objects=3, seed=0)
    view = augmented(dataset, presets["strong"])
    torch.manual_seed(0)
    for index in range(4):
        assert_consistent(*view[index])


def test_preset_files_comment_every_key():
    for path in sorted((config_dir() / "augment").glob("*.yaml")):
        lines = path.read_text().splitlines()
        assert lines[0].startswith("# "), path
        keys = [line for line in lines if re.match(r"^\s*\w+:\s*\S", line)]  # the rule test_config applies
        assert all("#" in line for line in keys), [line for line in keys if "#" not in line]


@pytest.mark.parametrize("name", ["none", "basic", "strong"])
def test_presets_compose_with_hydra(name):
    from losslab import compose_config

    cfg = compose_config([f"augment={name}", "augment.rotate.p=0.25"])
    options = OmegaConf.to_container(cfg.augment)
    assert options == {**preset(name), "rotate": {**preset(name)["rotate"], "p": 0.25}}


def test_show_augment_writes_a_seeded_grid(tmp_path):
    dataset = ShapesDataset(num_images=6, image_size=48, min_objects=1, max_objects=3, seed=0)
    options = {"mosaic": {"p": 0.5}, "rotate": {"p": 0.5}, "longest_max_size": {"p": 1.0, "max_size": 40}}
    state = torch.random.get_rng_state()
    first = show_augment(dataset, options, tmp_path / "a" / "grid.png", samples=5, seed=1, columns=3, cell_size=64)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is untouched
    again = show_augment(dataset, options, tmp_path / "b.png", samples=5, seed=1, columns=3, cell_size=64)
    other = show_augment(dataset, options, tmp_path / "c.png", samples=5, seed=2, columns=3, cell_size=64)
    assert imread(first).shape[:2] == (2 * (64 + 2) + 2, 3 * (64 + 2) + 2)
    assert first.read_bytes() == again.read_bytes() != other.read_bytes()


def test_show_augment_draws_box_only_data_and_unknown_labels(tmp_path):
    samples = [without_masks(synthetic_sample(seed=seed)) for seed in range(2)]
    samples[1][1]["labels"] = torch.tensor([1, 2, 3, 4, 7])  # labels beyond the class names are drawn as numbers
    path = show_augment(ListDataset(samples), {"horizontal_flip": {"p": 0.5}}, tmp_path / "grid.png", samples=2,
                        cell_size=72)
    assert imread(path).shape[:2] == (72 + 4, 2 * (72 + 2) + 2)


def test_show_augment_of_task_segmentation_draws_the_class_masks_augmented_with_their_images(tmp_path):
    tiny = ["task=segmentation", "data.num_images=10", "data.image_size=64"]
    state = torch.random.get_rng_state()
    first = draw_augmentations([*tiny, "augment=basic"], tmp_path / "a.png", samples=3, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = draw_augmentations([*tiny, "augment=basic"], tmp_path / "b.png", samples=3, seed=1)
    plain = draw_augmentations([*tiny, "augment=none"], tmp_path / "c.png", samples=3, seed=1)
    assert imread(first).shape[:2] == (256 + 4, 3 * (256 + 2) + 2)  # one row of three 256 px cells
    assert first.read_bytes() == again.read_bytes() != plain.read_bytes()
    strong = draw_augmentations([*tiny, "augment=strong"], tmp_path / "d.png", samples=3, seed=1)
    assert imread(strong).shape == imread(first).shape and strong.read_bytes() != first.read_bytes()
    with pytest.raises(LosslabError, match="augment.copy_paste.p=0.5: copy_paste pastes object instances"):
        draw_augmentations([*tiny, "augment.copy_paste.p=0.5"], tmp_path / "e.png", samples=3, seed=1)

"""The built-in synthetic dataset: coloured circles, squares and triangles on textured backgrounds.

Image i is drawn from its own generator seeded with (seed, i), so it never depends on the dataset
size or on which other images were read, and the same seed always gives the same pixels.
Colour says nothing about the class: the model has to learn shape.
"""

from __future__ import annotations

import numpy as np
import torch

from losslab.errors import LosslabError

CLASSES = ("circle", "square", "triangle")

PALETTE = np.array(
    [
        (220, 40, 40),
        (40, 170, 60),
        (40, 90, 220),
        (235, 200, 40),
        (190, 60, 200),
        (40, 200, 210),
        (245, 140, 30),
        (245, 245, 245),
    ],
    dtype=np.float32,
)

OBJECT_SIZE = (0.08, 0.2)  # radius range, as a fraction of the image side
MIN_VISIBLE_FRACTION = 0.3  # objects hidden more than this by later ones are dropped
MIN_VISIBLE_PIXELS = 16


class ShapesDataset(torch.utils.data.Dataset):
    """`num_images` images of `image_size` pixels, each with 1..max_objects shapes.

    Items are `(image, target)` in torchvision's detection convention: a float CHW image in
    [0, 1] and a dict with `boxes` (XYXY pixel edges), `labels` (1..3), `masks` (uint8 N×H×W)
    and `image_id`.
    """

    classes = CLASSES
    category_ids = [1, 2, 3]  # the label of each class is its id: there is no annotation file to map back to
    has_masks = True

    def __init__(self, num_images: int, image_size: int, min_objects: int, max_objects: int, seed: int,
                 object_size: tuple[float, float] | list[float] = OBJECT_SIZE):
        if num_images < 1 or image_size < 16 or not 1 <= min_objects <= max_objects:
            raise LosslabError(
                f"data=shapes needs data.num_images >= 1, data.image_size >= 16 and "
                f"1 <= data.min_objects <= data.max_objects; got num_images={num_images}, "
                f"image_size={image_size}, min_objects={min_objects}, max_objects={max_objects}."
            )
        if len(object_size) != 2 or not 0 < object_size[0] <= object_size[1] <= 0.5:
            raise LosslabError(f"data.object_size={list(object_size)}: expected [min, max] radius as a fraction of the "
                               "image side, 0 < min <= max <= 0.5 (e.g. [0.08, 0.2]).")
        self.num_images = num_images
        self.image_size = image_size
        self.min_objects = min_objects
        self.max_objects = max_objects
        self.seed = seed
        self.object_size = tuple(object_size)
        self.image_ids = list(range(num_images))
        self._labels: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        rng = np.random.default_rng((self.seed, index))
        image, masks, labels = render_image(rng, self.image_size, self.min_objects, self.max_objects, self.object_size)
        target = {
            "boxes": masks_to_boxes(masks),
            "labels": torch.as_tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(masks.astype(np.uint8)),
            "image_id": index,
        }
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), target

    def object_labels(self, index: int) -> list[int]:
        """The labels of image `index`'s objects: the image is drawn to find out (its annotation is its drawing)."""
        if index not in self._labels:
            self._labels[index] = self[index][1]["labels"].tolist()
        return self._labels[index]

    def image_labels(self) -> dict[int, set[int]]:
        """The labels present in each image (for stratified splits)."""
        return {i: set(self.object_labels(i)) for i in range(self.num_images)}


def render_image(
    rng: np.random.Generator, size: int, min_objects: int, max_objects: int,
    object_size: tuple[float, float] = OBJECT_SIZE,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """An HxWx3 float image in [0, 1], the visible N×H×W boolean masks and their labels (1-based)."""
    image, drawn, drawn_labels = paint_shapes(rng, size, min_objects, max_objects, object_size)
    masks: list[np.ndarray] = []
    for mask in drawn:
        # Later shapes cover earlier ones: cut them out of the earlier masks.
        masks = [m & ~mask for m in masks]
        masks.append(mask)
    keep = [
        i
        for i, m in enumerate(masks)
        if m.sum() >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * drawn[i].sum())
    ]
    stacked = np.stack([masks[i] for i in keep]) if keep else np.zeros((0, size, size), dtype=bool)
    return image, stacked, [drawn_labels[i] for i in keep]


def paint_shapes(
    rng: np.random.Generator, size: int, min_objects: int, max_objects: int,
    object_size: tuple[float, float] = OBJECT_SIZE,
) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """An HxWx3 float32 image in [0, 1] with 1..max_objects shapes painted in order (later ones cover earlier ones),
    each shape's full boolean mask and its label (1-based)."""
    image = textured_background(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    masks: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(rng.integers(min_objects, max_objects + 1)):
        label = int(rng.integers(1, len(CLASSES) + 1))
        mask = shape_mask(rng, CLASSES[label - 1], size, xx, yy, object_size)
        if not mask.any():
            continue
        colour = PALETTE[rng.integers(len(PALETTE))] * rng.uniform(0.8, 1.0) / 255.0
        shade = 1.0 + 0.08 * rng.standard_normal((size, size, 1)).astype(np.float32)
        image = np.where(mask[..., None], np.clip(colour * shade, 0, 1), image)
        masks.append(mask)
        labels.append(label)
    return image.astype(np.float32), masks, labels


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted base colour with a random sinusoidal texture, a gradient and pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(0.25, 0.6, size=3).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(4, 16)
    waves = np.sin(2 * np.pi * frequency * (xx * np.cos(angle) + yy * np.sin(angle)))
    gradient = (xx - 0.5) * rng.uniform(-0.2, 0.2) + (yy - 0.5) * rng.uniform(-0.2, 0.2)
    texture = rng.uniform(0.03, 0.1) * waves + gradient
    noise = 0.04 * rng.standard_normal((size, size, 3))
    return np.clip(base + texture[..., None] + noise, 0, 1).astype(np.float32)


def shape_mask(rng: np.random.Generator, kind: str, size: int, xx: np.ndarray, yy: np.ndarray,
               object_size: tuple[float, float] = OBJECT_SIZE) -> np.ndarray:
    """A boolean mask of one randomly placed, sized (radius in `object_size` x size) and rotated shape, mostly inside
    the image."""
    radius = rng.uniform(*object_size) * size
    cx, cy = rng.uniform(radius * 0.7, size - radius * 0.7, size=2)
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    corners = 4 if kind == "square" else 3
    angle = rng.uniform(0, 2 * np.pi)
    vertex_angles = angle + 2 * np.pi * np.arange(corners) / corners
    vertices = np.stack([cx + radius * np.cos(vertex_angles), cy + radius * np.sin(vertex_angles)], axis=1)
    return convex_polygon_mask(vertices, xx, yy)


def convex_polygon_mask(vertices: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Pixels whose centre lies inside the convex polygon with counter-clockwise `vertices`."""
    inside = np.ones(xx.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
    return inside


def masks_to_boxes(masks: np.ndarray) -> torch.Tensor:
    """XYXY boxes around each mask's pixels, from the first pixel's edge to the last one's far edge."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return torch.from_numpy(boxes)

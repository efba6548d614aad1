"""Semantic mask files: one PNG per image holding the class index of every pixel (255 = ignore), read and checked.

- Palette PNGs (mode P, as Pascal VOC's SegmentationClass) are read as their indices, never as colours;
  greyscale PNGs (L, I;16, I) as their values. Colour (RGB, RGBA) masks are refused: a colour is not a class index.
- Each mask must have its image's size (the image as stored, or as its EXIF orientation turns it).
- Every index must be a class (< the number of classes) or 255; the error names the file, the values and the
  classes. Headers are checked when the dataset loads; indices when a mask is decoded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from losslab.data.images import ImageFile, listing
from losslab.errors import LosslabError
from losslab.losses.catalogue import IGNORE_INDEX

INDEX_MODES = ("P", "L", "I;16", "I;16B", "I;16L", "I", "1")  # Pillow modes that hold one index per pixel


def mask_headers(paths: list[Path], source: str) -> list[tuple[int, int]]:
    """(width, height) of every mask file, after checking that Pillow reads it and that it holds indices."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        headers = list(pool.map(_mask_header, paths))
    unreadable = [f"{path} ({header})" for path, header in zip(paths, headers, strict=True) if isinstance(header, str)]
    if unreadable:
        raise LosslabError(f"{len(unreadable)} mask file(s) of {source} cannot be read as single-channel images of "
                           f"class indices: {listing(unreadable)}. Save masks as palette (P) or greyscale (L) PNGs "
                           "whose pixel values are class indices, 255 for pixels to ignore.")
    return headers


def _mask_header(path: Path) -> tuple[int, int] | str:
    try:
        with Image.open(path) as image:
            if image.mode not in INDEX_MODES:
                return f"mode {image.mode}: colours, not class indices"
            return image.size
    except Exception as error:  # Pillow raises many types for broken files; each one is a user's bad file
        return str(error) or type(error).__name__


def fit_to_masks(files: list[ImageFile], sizes: list[tuple[int, int]], mask_paths: list[Path],
                 source: str) -> list[ImageFile]:
    """The images as their masks see them: turned by their EXIF orientation when the mask has the turned size, as
    stored when it has the stored size; any other size is an error listing the pairs."""
    fitted, wrong = [], []
    for file, (width, height), mask in zip(files, sizes, mask_paths, strict=True):
        if (file.width, file.height) == (width, height):
            fitted.append(file)
        elif file.exif_transpose and (file.height, file.width) == (width, height):
            fitted.append(ImageFile(file.path, width, height))  # the mask was drawn on the pixels as stored
        else:
            wrong.append(f"{file.path.name} {file.width}x{file.height} vs {mask.name} {width}x{height}")
    if wrong:
        raise LosslabError(f"{len(wrong)} mask(s) of {source} do not have the size of their image: {listing(wrong)}. "
                           "A mask holds one class index per pixel of its image; resize neither, or pair each image "
                           "with the mask made for it.")
    return fitted


def read_mask(path: Path, num_classes: int) -> np.ndarray:
    """The class indices of a mask file, int64 [H, W]; a LosslabError when one is neither a class nor 255."""
    try:
        with Image.open(path) as image:
            indices = np.array(image, dtype=np.int64)
    except Exception as error:  # a file whose header was fine but whose pixels are broken
        raise LosslabError(f"mask {path} cannot be read: {error}. Replace or remove that file.") from error
    check_indices(indices, num_classes, str(path))
    return indices


def check_indices(indices: np.ndarray, num_classes: int, where: str) -> None:
    """Every value of `indices` must be a class index (0..num_classes-1) or IGNORE_INDEX."""
    values = np.unique(indices)
    wrong = values[(values >= num_classes) & (values != IGNORE_INDEX) | (values < 0)]
    if len(wrong):
        raise LosslabError(f"{where} holds the class index(es) {listing(wrong.tolist())}, but the data has "
                           f"{num_classes} classes (0..{num_classes - 1}, and 255 for pixels to ignore). Add the "
                           "missing names to data.classes (index i is classes[i], background first) or fix the mask.")

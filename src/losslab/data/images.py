"""Image files of user datasets: safe paths, an upfront check of every file, reading them as tensors, and the
dataset class the COCO and VOC readers fill (`AnnotatedImages`).

Every file is checked when the dataset loads, before any training: its name must stay inside the image folder (no
absolute paths, no `..` climbing out), it must exist, its real path (links resolved) must lie inside the folder too,
unless the user allows links that lead out, and Pillow must read its header (size and EXIF orientation, no pixels).

EXIF orientation: cameras store pixels as the sensor saw them and a tag saying how to turn them. The annotations'
width and height say which way the annotator saw the image: when they match the turned size the image is turned
(ImageOps.exif_transpose), when they match the stored size it is used as stored.
When the size cannot tell (a half turn or a mirror keep it), the tag is followed, as image viewers do.
Any other size is an error listing the files: boxes drawn on a differently sized image would be wrong.
"""

from __future__ import annotations

import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from losslab.errors import LosslabError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # the files read as images, in
# order of preference where one image has several (VOC's JPEGImages)
EXIF_ORIENTATION = 0x0112
TURNED_SIDEWAYS = (5, 6, 7, 8)  # orientations that swap width and height
MAX_LISTED = 5  # problem files named in an error message; the rest are counted
HEADER_CHUNK = 256  # image headers per thread task: a task per file costs as much as reading a small JPEG's header


@dataclass(frozen=True)
class ImageFile:
    """One image as the annotations see it: its path, its size and whether it must be EXIF-turned."""

    path: Path
    width: int
    height: int
    exif_transpose: bool = False


def listing(items: list, limit: int = MAX_LISTED) -> str:
    """The first `limit` items joined by commas, with how many more there are."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun in the number it needs: "1 image", "2 images", "1 class", "3 classes"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def existing_folder(path: str, key: str, expected: str) -> Path:
    """`path` as a Path, or a LosslabError naming the config `key` when it is not a folder."""
    return _existing(path, key, expected, folder=True)


def existing_file(path: str, key: str, expected: str) -> Path:
    """`path` as a Path, or a LosslabError naming the config `key` when it is not a file."""
    return _existing(path, key, expected, folder=False)


def _existing(path: str, key: str, expected: str, folder: bool) -> Path:
    found = Path(path).expanduser()
    if not (found.is_dir() if folder else found.is_file()):
        other = "a file, not a folder" if folder else "a folder, not a file"
        raise LosslabError(f"{key}={path}: {f'is {other}' if found.exists() else 'does not exist'}; "
                           f"expected {expected}.")
    return found


def resolve_files(folder: Path, names: list[str], source: str, follow_outside_links: bool = False) -> list[Path]:
    """The path of every image name inside `folder`, refusing names that would leave it and missing files.

    A name is used as given, relative to `folder`: an absolute name or one whose `..` climbs out is refused
    (never read outside the folder), and so is one that a symbolic link leads out of it, unless
    `follow_outside_links`. `source` names where the names come from (an annotation file) for the error message.
    """
    unsafe = [name for name in names if _leaves_folder(name)]
    if unsafe:
        raise LosslabError(
            f"{source} names {len(unsafe)} image file(s) outside the image folder {folder}: {listing(unsafe)}. "
            "Image names must be relative to that folder and may not climb out of it with '..'; losslab never "
            "reads files outside it. Fix the names or point the image folder at a folder containing them."
        )
    paths = [folder / name for name in names]
    missing = [name for name, path in zip(names, paths, strict=True) if not path.is_file()]
    if missing:
        raise LosslabError(
            f"{len(missing)} of the {counted(len(names), 'image')} that {source} lists are not in {folder}: "
            f"{listing(missing)}. "
            "Check the image folder, or remove those images from the annotations."
        )
    if not follow_outside_links:
        refuse_outside_links(folder, paths, source)
    return paths


def refuse_outside_links(folder: Path, paths: list[Path], source: str) -> None:
    """A LosslabError listing the `paths` (inside `folder`) that symbolic links lead out of it."""
    inside = folder.resolve()
    # Only a link, or a linked folder on the way, can lead out: resolving every file would cost a stat per part.
    parents: dict[Path, bool] = {}  # whether each parent folder's real path is inside: a few folders, many files
    leaving = []
    for path in paths:
        if path.parent not in parents:
            parents[path.parent] = path.parent.resolve().is_relative_to(inside)
        if os.path.islink(path) or not parents[path.parent]:
            target = path.resolve()
            if not target.is_relative_to(inside):
                leaving.append(f"{path.relative_to(folder)} -> {target}")
    if leaving:
        raise LosslabError(
            f"{len(leaving)} image file(s) that {source} lists are symbolic links (or lie in linked folders) leading "
            f"outside {folder}: {listing(leaving)}. losslab reads only files inside the dataset's folder; move or "
            "copy those files into it or, for a dataset made of links you trust, set data.follow_outside_links=true."
        )


def _leaves_folder(name: str) -> bool:
    if not isinstance(name, str) or not name.strip():
        return True
    normal = posixpath.normpath(name.replace("\\", "/"))
    return normal.startswith("/") or normal == ".." or normal.startswith("../")


def probe_images(paths: list[Path], annotated: list[tuple[int, int] | None], source: str) -> list[ImageFile]:
    """Check that every file is an image Pillow reads and that it has the size its annotations give.

    `annotated` holds each image's (width, height) from the annotations, or None where they do not say (the file's
    size is used). Headers are read in threads: it is file I/O, not decoding."""
    chunks = [paths[start:start + HEADER_CHUNK] for start in range(0, len(paths), HEADER_CHUNK)]
    headers: list[tuple[int, int, int] | str] = []
    with ThreadPoolExecutor(max_workers=8) as pool, tqdm(total=len(paths), desc="checking images", unit="image",
                                                         leave=False, disable=None, dynamic_ncols=True) as bar:
        # disable=None: a bar on a terminal only, so log files stay clean
        for chunk in pool.map(lambda chunk: [_read_header(path) for path in chunk], chunks):
            headers += chunk
            bar.update(len(chunk))
    unreadable = [f"{path} ({header})" for path, header in zip(paths, headers, strict=True) if isinstance(header, str)]
    if unreadable:
        raise LosslabError(
            f"{len(unreadable)} image file(s) that {source} lists cannot be read as images: {listing(unreadable)}. "
            "Replace or remove those files (Pillow reads JPEG, PNG, BMP, TIFF, WebP and more)."
        )
    files = [_oriented(path, header, size) for path, header, size in zip(paths, headers, annotated, strict=True)]
    mismatched = [file for file in files if isinstance(file, str)]
    if mismatched:
        raise LosslabError(
            f"{len(mismatched)} image(s) that {source} lists do not have the width and height their annotations "
            f"give: {listing(mismatched)}. The boxes were drawn on an image of another size; fix the sizes in the "
            "annotations or use the images they were made on."
        )
    return files


def _read_header(path: Path) -> tuple[int, int, int] | str:
    """(width, height, EXIF orientation) as stored, or why the file cannot be read."""
    try:
        with Image.open(path) as image:
            return (*image.size, _orientation(image))
    except Exception as error:  # Pillow raises many types for broken files; each one is a user's bad file
        return str(error) or type(error).__name__


def _orientation(image: Image.Image) -> int:
    # A PNG's EXIF may follow the pixels, and Pillow would decode the whole image to find it: only the
    # header's is used, and reading applies the same decision, so both always agree.
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    return int(image.getexif().get(EXIF_ORIENTATION, 1))


def _oriented(path: Path, header: tuple[int, int, int], annotated: tuple[int, int] | None) -> ImageFile | str:
    """The ImageFile as the annotations see it, or a description of the size mismatch."""
    width, height, orientation = header
    turned = (height, width) if orientation in TURNED_SIDEWAYS else (width, height)
    if annotated is None or tuple(annotated) == turned:
        return ImageFile(path, *turned, exif_transpose=orientation != 1)
    if tuple(annotated) == (width, height):  # annotated on the pixels as stored, ignoring the EXIF tag
        return ImageFile(path, width, height)
    return f"{path.name} (annotations {annotated[0]}x{annotated[1]}, file {turned[0]}x{turned[1]})"


def read_image(file: ImageFile) -> torch.Tensor:
    """The image as a float CHW tensor in [0, 1] with three channels, turned as `file` says.

    Any mode Pillow opens becomes RGB: greyscale and palette images are expanded, alpha is dropped and
    CMYK converted; 16-bit greyscale is scaled from 0..65535.
    """
    try:
        pixels = decode_pixels(file.path, file.exif_transpose)
    except Exception as error:  # a file that passed the header check but whose pixels are broken
        raise LosslabError(f"image {file.path} cannot be read: {error}. Replace or remove that file.") from error
    if pixels.shape[1:] != (file.height, file.width):
        raise LosslabError(f"image {file.path} is {pixels.shape[2]}x{pixels.shape[1]} pixels but was "
                           f"{file.width}x{file.height} when the dataset was loaded; was it changed meanwhile?")
    return pixels


def decode_pixels(path: Path, exif_transpose: bool) -> torch.Tensor:
    """Any image file Pillow opens as a float RGB CHW tensor in [0, 1], turned as its EXIF orientation says
    when `exif_transpose`. Pillow's own exception when the file is not a readable image."""
    with Image.open(path) as image:
        return _rgb_pixels(ImageOps.exif_transpose(image) if exif_transpose else image)


def _rgb_pixels(image: Image.Image) -> torch.Tensor:
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit (or wider) greyscale
        grey = torch.from_numpy(np.asarray(image, dtype=np.float32) / 65535.0).clamp_(0, 1)
        return grey.expand(3, -1, -1).contiguous()
    rgb = torch.from_numpy(np.array(image.convert("RGB")))  # np.array: a writable copy, as torch wants
    # One pass from HWC bytes to contiguous CHW floats: several times faster than .contiguous().float().
    return rgb.permute(2, 0, 1).to(torch.float32, memory_format=torch.contiguous_format).div_(255)


# ---------------------------------------------------------------------------------------------- datasets


@dataclass
class Record:
    """One image of a dataset and its training objects (boxes XYXY in pixel edges, labels 1..K)."""

    image_id: int | str  # the dataset's own id: COCO's image id, VOC's file stem
    target_id: int  # `image_id` of the target: an int, as evaluation's COCO export needs
    file: ImageFile
    name: str  # the file name the annotations give, for reports
    boxes: np.ndarray  # float32 N×4
    labels: np.ndarray  # int64 N
    areas: np.ndarray | None = None  # float32 N: the annotations' own object areas (NaN where one gives none)


class AnnotatedImages(torch.utils.data.Dataset):
    """Image files with boxes, in torchvision's detection convention; the readers of COCO and VOC fill it.

    Items are `(image, target)`: a float CHW image in [0, 1] and a dict with `boxes`, `labels`, `image_id` and
    `file_name` (what the annotations call the image: evaluation's files name it), plus `masks` (uint8 N×H×W) when
    `has_masks`.
    """

    has_masks = False
    # What loading left out or changed, for the data audit: {"crowd": n, "clipped boxes": n, ...} as the reader
    # counts it; None when it does not.
    left_out: dict[str, int] | None = None

    def __init__(self, records: list[Record], classes: tuple[str, ...], category_ids: list[int]):
        self.records = records
        self.classes = classes
        self.category_ids = category_ids  # the annotations' id of label i is category_ids[i - 1]
        self.image_ids = [record.image_id for record in records]
        self.file_names = [record.name for record in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        record = self.records[index]
        target = {"boxes": torch.from_numpy(record.boxes), "labels": torch.from_numpy(record.labels),
                  "image_id": record.target_id, "file_name": record.name}
        if record.areas is not None:  # evaluation's ground truth keeps them (COCO's size ranges read them)
            target["area"] = torch.from_numpy(record.areas)
        if self.has_masks:
            target["masks"] = self.masks(index)
        return read_image(record.file), target

    def masks(self, index: int) -> torch.Tensor:
        """The uint8 N×H×W instance masks of image `index` (datasets with masks override this)."""
        raise NotImplementedError

    def object_labels(self, index: int) -> list[int]:
        """The labels of image `index`'s objects, from the annotations (no pixels read)."""
        return self.records[index].labels.tolist()

    def image_labels(self) -> dict[int | str, set[int]]:
        """The labels present in each image, from the annotations (no pixels read): what stratification needs."""
        return {record.image_id: set(record.labels.tolist()) for record in self.records}

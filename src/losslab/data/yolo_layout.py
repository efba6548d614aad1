"""Ultralytics' YOLO layout: the data.yaml (class names, the dataset's root and its train/val/test images) and the
rule pairing each image with its label file, as Ultralytics' `check_det_dataset`, `get_img_files` and
`img2label_paths` (ultralytics/data/utils.py, base.py) define them.

- `names`: a list, or a mapping {index: name} whose indices are exactly 0..n-1; `nc` is optional and, when given,
  must be the number of names (without `names`, the classes are class_0..class_{nc-1}).
- `path`: the root; relative to the yaml's folder when relative (Ultralytics: to the working folder, then its
  datasets folder), the yaml's folder when absent. `train`, `val` (or `validation`) and `test` are each a folder, a
  list of folders, or a .txt list of image paths, relative to the root; a relative entry `../x` that does not exist
  is read as `x`, as Ultralytics does for Roboflow's exports. `..` is collapsed without following links.
- A folder holds every image below it (recursively); a list file names one image per line, `./x` and other relative
  lines relative to the list's folder (Ultralytics reads lines without `./` from the working folder: losslab never
  depends on it). Images of a split are sorted by path, as Ultralytics sorts them.
- The label file of `.../images/.../a.jpg` is `.../labels/.../a.txt`: the last `/images/` of the path becomes
  `/labels/` and the extension `.txt`; an image whose path has no `/images/` has its label beside it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml as yaml_module

from losslab.data.images import IMAGE_EXTENSIONS, counted, existing_file, listing
from losslab.data.split import SPLITS
from losslab.errors import LosslabError

log = logging.getLogger(__name__)


@dataclass
class YoloLayout:
    """What a data.yaml says: the class names (index 0 first), the root, the image files of each split and the .txt
    list files naming some of them."""

    yaml: Path
    root: Path
    classes: tuple[str, ...]
    # "train", "val", "test" -> image files, sorted; absent splits are empty. Normalised path strings, not Paths:
    # a Path per image is most of a cached load's time on 100k images (Python 3.11's pathlib parses every one).
    images: dict[str, list[str]]
    lists: list[Path]  # the list files the entries name, sorted


def read_layout(path: str) -> YoloLayout:
    """The layout `data.yaml=path` describes; a LosslabError naming the key and what was expected otherwise."""
    file = existing_file(path, "data.yaml", "an Ultralytics dataset file (data.yaml with path, train, val, names)")
    content = _read_yaml(file)
    where = f"data.yaml={path}"
    if "val" not in content and "validation" in content:
        content["val"] = content["validation"]  # an older spelling Ultralytics still accepts
    if not content.get("train"):
        raise LosslabError(f"{where} has no 'train:' entry; expected the training images as a folder, a list of "
                           "folders or a .txt list of image paths, relative to 'path:' (e.g. train: images/train).")
    root = _root(file, content.get("path"))
    found = {split: _split_images(root, content.get(split), f"{where}: {split}") for split in SPLITS}
    images = {split: paths for split, (paths, _) in found.items()}
    if not images["train"]:
        raise LosslabError(f"{where}: train: {content['train']} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
    lists = sorted({file for _, files in found.values() for file in files})
    return YoloLayout(file, root, _classes(content, where), images, lists)


def _read_yaml(file: Path) -> dict:
    try:
        content = yaml_module.safe_load(file.read_text(encoding="utf-8"))
    except (yaml_module.YAMLError, UnicodeDecodeError) as error:
        raise LosslabError(f"data.yaml={file} is not a readable YAML file ({error}). Fix or re-export it.") from error
    if not isinstance(content, dict):
        raise LosslabError(f"data.yaml={file} is not a mapping; expected Ultralytics' data.yaml keys path, train, val, "
                           "test and names.")
    return content


def _root(file: Path, path: object) -> Path:
    if path in (None, ""):
        return file.parent
    if not isinstance(path, str):
        raise LosslabError(f"data.yaml={file}: path: {path!r}; expected the dataset's root folder.")
    root = file.parent / Path(path).expanduser()  # an absolute path stays as it is
    if not root.is_dir():
        raise LosslabError(f"data.yaml={file}: path: {path} is not a folder ({root}); expected the dataset's root, "
                           "absolute or relative to the yaml's folder.")
    return Path(os.path.normpath(root))


def _classes(content: dict, where: str) -> tuple[str, ...]:
    names, nc = content.get("names"), content.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
        raise LosslabError(f"{where}: nc: {nc!r}; expected the number of classes (a whole number, 1 or more).")
    if names is None:
        if nc is None:
            raise LosslabError(f"{where} has neither 'names:' nor 'nc:'; expected the class names (names: [cat, dog] "
                               "or names: {0: cat, 1: dog}).")
        return tuple(f"class_{index}" for index in range(nc))
    if isinstance(names, dict):
        names = _listed(names, where)
    if not isinstance(names, list) or not names:
        raise LosslabError(f"{where}: names: {names!r}; expected a non-empty list of class names or a mapping "
                           "{0: name, 1: name, ...}.")
    if nc is not None and nc != len(names):
        raise LosslabError(f"{where}: nc: {nc} but names gives {counted(len(names), 'class', 'classes')}; they must "
                           "agree (nc may be left out).")
    return tuple(str(name) for name in names)


def _listed(names: dict, where: str) -> list:
    """The names of a mapping {index: name} in index order; its indices must be exactly 0..n-1."""
    try:
        indices = {int(str(key)): value for key, value in names.items()}
    except ValueError as error:
        raise LosslabError(f"{where}: names has keys that are not class indices ({listing(list(names))}); expected "
                           "{0: name, 1: name, ...}.") from error
    if sorted(indices) != list(range(len(indices))):
        raise LosslabError(f"{where}: names has the indices {listing(sorted(indices), 10)}; expected exactly 0.."
                           f"{len(indices) - 1}, one name per class index the label files use.")
    return [indices[index] for index in range(len(indices))]


def _split_images(root: Path, entry: object, where: str) -> tuple[list[str], list[Path]]:
    """The image files of one split's entry (a folder, a .txt list file, or a list of either) and its list files."""
    if entry in (None, ""):
        return [], []
    entries = entry if isinstance(entry, list) else [entry]
    if not all(isinstance(item, str) for item in entries):
        raise LosslabError(f"{where}: {entry!r}; expected a folder, a .txt list of image paths, or a list of them.")
    images: set[str] = set()
    lists = []
    for item in entries:
        source = _resolved(root, item)
        if source.is_dir():
            images.update(_folder_images(source))
        elif source.is_file():
            images.update(_listed_images(source, where))
            lists.append(source)
        else:
            raise LosslabError(f"{where}: {item} does not exist ({source}); expected a folder of images or a .txt "
                               "list of image paths, relative to the yaml's 'path:' (its folder when absent).")
    return in_path_order(images), lists


def _folder_images(source: Path) -> list[str]:
    """Every image below `source`, as Path would write it (normalised: no `./`)."""
    found = []
    for folder, _, names in os.walk(source):
        folder = os.path.normpath(folder)
        prefix = "" if folder == "." else folder.rstrip("/") + "/"
        found += [prefix + name for name in names if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS]
    return found


def in_path_order(paths: set | list) -> list:
    """`paths` (normalised strings, or Paths) sorted as Path sorts them on POSIX (part by part), by a key: Path's own
    comparison is several times slower, and a cached load of 100k images sorts them on every run."""
    return sorted(paths, key=lambda path: _order_key(str(path)))


def _order_key(text: str) -> str:
    """A string that sorts as Path(text).parts do: the parts joined by NUL, which no name holds and every character
    follows, so a name sorts before any longer one it begins ("a" before "a b"), as in a comparison of parts."""
    names = text.lstrip("/")
    root = text[:len(text) - len(names)]  # POSIX keeps a root of two slashes; more are one
    if not root:
        return names.replace("/", "\0")
    return ("//" if len(root) == 2 else "/") + "\0" + names.replace("/", "\0")


def _resolved(root: Path, item: str) -> Path:
    path = Path(os.path.normpath(root / Path(item).expanduser()))
    if not path.exists() and item.startswith("../"):
        return Path(os.path.normpath(root / item[3:]))
    return path


def _listed_images(list_file: Path, where: str) -> list[str]:
    lines = [line.strip() for line in list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    paths = [os.path.normpath(os.path.join(list_file.parent, os.path.expanduser(line))) for line in lines]
    images = [path for path in paths if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS]
    if len(images) < len(paths):
        others = [path for path in paths if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS]
        log.warning("%s: %s lists %d line(s) that are not image files, left out (%s)", where, list_file, len(others),
                    listing(others))
    missing = [path for path in images if not os.path.isfile(path)]
    if missing:
        raise LosslabError(f"{where}: {len(missing)} of the {counted(len(images), 'image')} that {list_file} lists "
                           f"do not exist: {listing(missing)}. Lines are image paths, relative to the list's folder.")
    return images


def label_path(image: Path) -> Path:
    """Ultralytics' img2label_paths: the last /images/ of the path becomes /labels/, the extension .txt."""
    return Path(label_file(str(image)))


def label_file(image: str) -> str:
    """label_path of a normalised path string."""
    marker = f"{os.sep}images{os.sep}"
    if marker in image:
        head, tail = image.rsplit(marker, 1)
        image = f"{head}{os.sep}labels{os.sep}{tail}"
    return image.rsplit(".", 1)[0] + ".txt"


def found_labels(label_files: list[str]) -> tuple[set[str], list[str]]:
    """Which of `label_files` exist (as files), and the .txt files in their folders that are none of them (labels
    without an image), in path order: one listing per folder instead of a stat per label file."""
    expected: dict[str, set[str]] = {}
    for file in label_files:
        folder, name = os.path.split(file)
        expected.setdefault(folder, set()).add(name)
    found, stray = set(), []
    for folder, names in expected.items():
        if not os.path.isdir(folder or "."):
            continue
        prefix = os.path.join(folder, "")
        with os.scandir(folder or ".") as scan:
            files = [entry.name for entry in scan if entry.name.endswith(".txt") and entry.is_file()]
        found.update(prefix + name for name in files if name in names)
        stray += [prefix + name for name in files if name not in names]
    return found, in_path_order(stray)

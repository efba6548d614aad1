"""The structure of a COCO instances file, checked before any image is read: the lists and fields every entry
needs, unique ids, annotations that point at listed images and categories, and the background category some
annotation tools write (labelme's converter: id 0, `_background_`), which is left out."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from losslab.data.coco_file import ANNOTATION_FIELDS, Annotations
from losslab.data.images import listing
from losslab.errors import LosslabError

IMAGE_FIELDS = {"id": int, "file_name": str}
CATEGORY_FIELDS = {"id": int, "name": str}


def check_structure(content: object, path: Path) -> None:
    """Raise one LosslabError naming the first kind of problem (with examples) that makes `content` (as read_coco
    reads it) unusable."""
    if not isinstance(content, dict) or not isinstance(content.get("annotations"), Annotations) or not all(
            isinstance(content.get(key), list) for key in ("images", "categories")):
        raise LosslabError(f"data.annotations={path} is not a COCO instances file: expected a JSON object with the "
                           "lists 'images', 'annotations' and 'categories'.")
    for key, fields in (("images", IMAGE_FIELDS), ("categories", CATEGORY_FIELDS)):
        raise_if(_field_problems(content[key], key, fields), path, _needs(key, fields))
    raise_if(content["annotations"].field_problems, path, _needs("annotations", ANNOTATION_FIELDS))
    for key in ("images", "categories"):
        duplicates = sorted(i for i, count in Counter(entry["id"] for entry in content[key]).items() if count > 1)
        raise_if([f"{key} id {i}" for i in duplicates], path, f"every {key[:-1]} id must be unique")
    if not content["categories"]:
        raise LosslabError(f"data.annotations={path} has no categories; expected at least one object class.")
    _check_annotations(content, path)


def _needs(key: str, fields: dict[str, type]) -> str:
    return f"each entry of '{key}' needs " + ", ".join(f"'{name}' ({kind.__name__})" for name, kind in fields.items())


def _check_annotations(content: dict, path: Path) -> None:
    # Set tests over the columns, naming the offenders only when there are any: a million annotations take a second.
    images = {image["id"] for image in content["images"]}
    categories = {category["id"] for category in content["categories"]}
    annotations: Annotations = content["annotations"]
    raise_if(annotations.bbox_problems, path, "a bbox is [x, y, width, height] in pixels")
    if not set(annotations.image_ids) <= images:
        raise_if([f"annotation {annotations.name(i)}: image_id {image_id}"
                  for i, image_id in enumerate(annotations.image_ids) if image_id not in images],
                 path, "every annotation's image_id must be the id of an image in 'images'")
    if not set(annotations.category_ids) <= categories:
        raise_if([f"annotation {annotations.name(i)}: category_id {category_id}"
                  for i, category_id in enumerate(annotations.category_ids) if category_id not in categories],
                 path, f"every annotation's category_id must be one of the 'categories' ids "
                 f"({listing(sorted(categories), 20)})")


def _field_problems(entries: list, key: str, fields: dict[str, type]) -> list[str]:
    problems = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"{key}[{i}] is {type(entry).__name__}")
            continue
        wrong = [name for name, kind in fields.items()
                 if not isinstance(entry.get(name), kind) or isinstance(entry.get(name), bool)]
        if wrong:
            problems.append(f"{key}[{i}] ({', '.join(f'{name}={entry.get(name)!r}' for name in wrong)})")
    return problems


def raise_if(problems: list[str], path: Path, rule: str) -> None:
    if problems:
        raise LosslabError(f"data.annotations={path}: {rule}; {len(problems)} do not: {listing(problems)}. "
                           "Fix the annotation file.")


def annotated_size(image: dict) -> tuple[int, int] | None:
    """(width, height) from the image entry, or None when it does not give both (the file's size is used)."""
    width, height = image.get("width"), image.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


BACKGROUND_NAMES = ("_background_", "background", "__background__")


def without_background(categories: list[dict], annotations: Annotations, path: Path
                       ) -> tuple[list[dict], np.ndarray, list[str]]:
    """The categories without a background category (id 0, named as in BACKGROUND_NAMES), which annotations are
    left (a mask), and the one warning to give when there was one; a LosslabError when no other category is left."""
    background = [c for c in categories if c["id"] == 0 and c["name"].strip().lower() in BACKGROUND_NAMES]
    if not background:
        return categories, np.ones(len(annotations), dtype=bool), []
    objects = [c for c in categories if c["id"] != 0]
    if not objects:
        raise LosslabError(f"data.annotations={path} has no category but the background (id 0, "
                           f"'{background[0]['name']}'); expected at least one object class.")
    kept = np.array(annotations.category_ids, dtype=np.int64).reshape(-1) != 0
    left_out = int((~kept).sum())
    dropped = f", with its {left_out} annotation(s)" if left_out else ""
    return objects, kept, [f"{path}: category 0 '{background[0]['name']}' is the background (as labelme's COCO "
                           f"converter writes it), not an object class: left out{dropped}"]

"""The structure of a COCO instances file, checked before any image is read: the lists and fields every entry
needs, unique ids, annotations that point at listed images and categories, and the background category some
annotation tools write (labelme's converter: id 0, `_background_`), which is left out."""

from __future__ import annotations

from collections import Counter
from itertools import chain
from numbers import Real
from pathlib import Path

from losslab.data.images import listing
from losslab.errors import LosslabError

IMAGE_FIELDS = {"id": int, "file_name": str}
CATEGORY_FIELDS = {"id": int, "name": str}
ANNOTATION_FIELDS = {"image_id": int, "category_id": int, "bbox": list}


def check_structure(content: object, path: Path) -> None:
    """Raise one LosslabError naming the first kind of problem (with examples) that makes `content` unusable."""
    if not isinstance(content, dict) or not all(isinstance(content.get(key), list)
                                                for key in ("images", "annotations", "categories")):
        raise LosslabError(f"data.annotations={path} is not a COCO instances file: expected a JSON object with the "
                           "lists 'images', 'annotations' and 'categories'.")
    for key, fields in (("images", IMAGE_FIELDS), ("categories", CATEGORY_FIELDS),
                        ("annotations", ANNOTATION_FIELDS)):
        raise_if(_field_problems(content[key], key, fields), path, f"each entry of '{key}' needs "
                  + ", ".join(f"'{name}' ({kind.__name__})" for name, kind in fields.items()))
    for key in ("images", "categories"):
        duplicates = sorted(i for i, count in Counter(entry["id"] for entry in content[key]).items() if count > 1)
        raise_if([f"{key} id {i}" for i in duplicates], path, f"every {key[:-1]} id must be unique")
    if not content["categories"]:
        raise LosslabError(f"data.annotations={path} has no categories; expected at least one object class.")
    _check_annotations(content, path)


def _check_annotations(content: dict, path: Path) -> None:
    # Each check is one pass over plain values with a set test, and names the offenders only when there are any:
    # a file of a million annotations is checked in about a second.
    images = {image["id"] for image in content["images"]}
    categories = {category["id"] for category in content["categories"]}
    annotations = content["annotations"]
    bboxes = [a["bbox"] for a in annotations]
    if set(map(len, bboxes)) - {4} or set(map(type, chain.from_iterable(bboxes))) - {int, float}:
        raise_if([f"annotation {annotation_name(a)}: bbox {a['bbox']}" for a in annotations
                  if len(a["bbox"]) != 4 or not all(isinstance(v, Real) for v in a["bbox"])],
                 path, "a bbox is [x, y, width, height] in pixels")
    if not {a["image_id"] for a in annotations} <= images:
        raise_if([f"annotation {annotation_name(a)}: image_id {a['image_id']}" for a in annotations
                  if a["image_id"] not in images],
                 path, "every annotation's image_id must be the id of an image in 'images'")
    if not {a["category_id"] for a in annotations} <= categories:
        raise_if([f"annotation {annotation_name(a)}: category_id {a['category_id']}" for a in annotations
                  if a["category_id"] not in categories], path, "every annotation's category_id must be one of the "
                 f"'categories' ids ({listing(sorted(categories), 20)})")


def _field_problems(entries: list, key: str, fields: dict[str, type]) -> list[str]:
    kinds = tuple(fields.items())
    problems = []
    for i, entry in enumerate(entries):
        # JSON gives exact types, so `type(...) is` decides almost every entry (and refuses bool for int)
        if type(entry) is dict and all(type(entry.get(name)) is kind for name, kind in kinds):
            continue
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


def annotation_name(annotation: dict) -> str:
    """How an error names an annotation: by its id, or by its image when it has none."""
    return f"id {annotation['id']}" if "id" in annotation else f"without id of image {annotation['image_id']}"


def annotated_size(image: dict) -> tuple[int, int] | None:
    """(width, height) from the image entry, or None when it does not give both (the file's size is used)."""
    width, height = image.get("width"), image.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None


BACKGROUND_NAMES = ("_background_", "background", "__background__")


def without_background(categories: list[dict], annotations: list[dict], path: Path
                       ) -> tuple[list[dict], list[dict], list[str]]:
    """The categories and annotations without a background category (id 0, named as in BACKGROUND_NAMES), and the
    one warning to give when there was one; a LosslabError when no other category is left."""
    background = [c for c in categories if c["id"] == 0 and c["name"].strip().lower() in BACKGROUND_NAMES]
    if not background:
        return categories, annotations, []
    objects = [c for c in categories if c["id"] != 0]
    if not objects:
        raise LosslabError(f"data.annotations={path} has no category but the background (id 0, "
                           f"'{background[0]['name']}'); expected at least one object class.")
    kept = [a for a in annotations if a["category_id"] != 0]
    dropped = f", with its {len(annotations) - len(kept)} annotation(s)" if len(kept) < len(annotations) else ""
    return objects, kept, [f"{path}: category 0 '{background[0]['name']}' is the background (as labelme's COCO "
                           f"converter writes it), not an object class: left out{dropped}"]

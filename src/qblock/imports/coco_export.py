"""Roboflow's COCO JSON export: ``_annotations.coco.json`` in each split folder (or one, flat).

Boxes are ``bbox: [x, y, width, height]`` in pixels of the image as listed (``width``, ``height``);
some exports write them as strings. Category 0 is often Roboflow's unused parent category; only
the categories the annotations use must map to this project's classes.
"""

from __future__ import annotations

import json
from pathlib import Path

from qblock.core.errors import UserError
from qblock.imports.pages import Box, ImportedPage, as_dict, image_size
from qblock.imports.yolo_export import (
    SPLITS,
    augment_note,
    copies_note,
    export_sides,
    one_per_source,
    only_augmented,
    resize_note,
    source_of,
)

ANNOTATIONS = "_annotations.coco.json"


def annotation_files(folder: Path) -> list[Path]:
    found = sorted(folder.rglob(ANNOTATIONS))
    if not found:
        raise UserError(f"{folder}: no {ANNOTATIONS} (Roboflow's COCO export has one per split folder)")
    return found


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path}: no `images` list: not a COCO annotations file")
    return data


def _number(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]  # some Roboflow exports write "996.0000"
    except (TypeError, ValueError):
        raise UserError(f"{where}: {value!r} is not a number") from None
    if number != number:  # NaN
        raise UserError(f"{where}: not a number")
    return number


def read_export(folder: Path, display: str) -> tuple[list[ImportedPage], list[str]]:
    found: list[tuple[str, Path, str | None]] = []
    boxes_of: dict[Path, tuple[list[Box], tuple[float, float], str]] = {}
    used: set[str] = set()
    for path in annotation_files(folder):
        data = _load(path)
        rel_json = path.relative_to(folder).as_posix()
        categories = {c.get("id"): str(c.get("name")) for c in data.get("categories", []) if isinstance(c, dict)}
        images: dict[object, Path] = {}
        sizes: dict[object, tuple[float, float]] = {}
        split = path.parent.name if path.parent.name in SPLITS else ""
        missing = []
        for entry in data["images"]:
            where = f"{display}: {rel_json}, image {entry.get('id') if isinstance(entry, dict) else entry!r}"
            if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
                raise UserError(f"{where}: no file_name")
            name = entry["file_name"]
            if Path(name.replace("\\", "/")).name != name.replace("\\", "/").split("/")[-1] or ".." in name:
                raise UserError(f"{where}: file name {name!r} leaves the export's folder")
            image = path.parent / Path(name.replace("\\", "/")).name
            if image in boxes_of:
                raise UserError(f"{where}: {name} is listed twice")
            if not image.is_file():
                missing.append(name)
                continue
            images[entry.get("id")] = image
            sizes[entry.get("id")] = (_number(entry.get("width"), f"{where} width"),
                                      _number(entry.get("height"), f"{where} height"))
            extra = as_dict(entry.get("extra"))
            original = extra.get("name") if isinstance(extra.get("name"), str) else None
            found.append((split, image, source_of(original)[0] if original else None))  # the _jpg marker stripped
            boxes_of[image] = ([], sizes[entry.get("id")], f"{display}: {image.relative_to(folder).as_posix()}")
        if missing:
            raise UserError(f"{display}: {rel_json}: {len(missing)} of the {len(data['images'])} images it lists are "
                            f"not beside it: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. Export "
                            f"again, or unpack the whole export (images and JSON in one folder per split)")
        for annotation in data.get("annotations", []):
            where = f"{display}: {rel_json}, annotation {annotation.get('id') if isinstance(annotation, dict) else '?'}"
            if not isinstance(annotation, dict) or annotation.get("image_id") not in images:
                raise UserError(f"{where}: its image_id is not in `images`")
            if annotation.get("category_id") not in categories:
                raise UserError(f"{where}: category_id {annotation.get('category_id')!r} is not in `categories`")
            bbox = annotation.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise UserError(f"{where}: bbox must be [x, y, width, height]")
            x, y, w, h = (_number(v, f"{where} bbox") for v in bbox)
            label = categories[annotation["category_id"]]
            used.add(label)
            boxes_of[images[annotation["image_id"]]][0].append(Box(x, y, w, h, label))
    chosen, skipped = one_per_source(found, lambda image: len(boxes_of[image][0]))
    sides = export_sides(found)
    pages = []
    for source, image in chosen:
        boxes, (listed_w, listed_h), rel = boxes_of[image]
        size = image_size(image, rel)
        if size != (int(listed_w), int(listed_h)):  # listed for another size: scale to the file's pixels
            sx, sy = size[0] / listed_w, size[1] / listed_h
            boxes = [Box(b.x * sx, b.y * sy, b.width * sx, b.height * sy, b.label) for b in boxes]
        pages.append(ImportedPage(rel, image, source, boxes, size, split=sides[image]))
    notes = [f"classes used: {', '.join(sorted(used)) or 'none'}", *copies_note(skipped, len(pages)),
             *augment_note(folder, only_augmented(found, chosen)), *resize_note(folder)]
    return pages, notes

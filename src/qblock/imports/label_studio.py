"""Label Studio's JSON export of rectangles (``RectangleLabels``, or ``Rectangle`` plus ``Labels``).

Each task names its image in ``data`` (``image``, ``image_url``, ...): an upload
(``/data/upload/{project}/{8 chars}-{original name}``), a local file
(``/data/local-files/?d=folder%5Cname.jpg``) or a URL. It is found in ``--images DIR`` by its
path under that folder, else by its original name. Per task, one annotation is imported: the one
marked ``ground_truth``, else the latest; cancelled ones never. A task with no annotation is not
labeled yet (not imported); an annotation with no boxes is a page with no questions.
Boxes are in percent of the image, converted with the image's own pixel size; a rotated box is
an error (a question block is upright).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from qblock.core.errors import UserError
from qblock.data.app_folder import IMAGE_SUFFIXES
from qblock.imports.pages import Box, ImportedPage, as_dict, image_size, original_name

GEOMETRY = ("x", "y", "width", "height")
_IMAGE_KEYS = ("image", "image_url", "img", "url", "ocr")


def load_tasks(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise UserError(f"{path}: not a Label Studio JSON export (a list of tasks)")
    return data


def image_reference(task: dict) -> str | None:
    data = as_dict(task.get("data"))
    targets = [r.get("to_name") for a in task.get("annotations") or [] if isinstance(a, dict)
               for r in a.get("result") or [] if isinstance(r, dict)]
    for key in [*dict.fromkeys(t for t in targets if isinstance(t, str)), *_IMAGE_KEYS]:
        if isinstance(data.get(key), str):
            return data[key]
    return next((v for v in data.values() if isinstance(v, str) and Path(urlparse(v).path).suffix.lower()
                 in IMAGE_SUFFIXES), None)


def reference_path(reference: str) -> str:
    """The file path a reference names: the ``d=`` of a local-files URL, else the URL's path."""
    parsed = urlparse(reference)
    if "local-files" in parsed.path and "d" in parse_qs(parsed.query):
        path = parse_qs(parsed.query)["d"][0]
    else:
        path = unquote(parsed.path)
    return path.replace("\\", "/")


class ImageFolder:
    """The images a person exported from: found by relative path, else by (original) file name."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise UserError(f"--images {folder}: no such folder")
        self.folder = folder.resolve()
        self.by_name: dict[str, list[Path]] = {}
        for path in sorted(self.folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                for key in {path.name.casefold(), original_name(path.name).casefold() + path.suffix.lower()}:
                    self.by_name.setdefault(key, []).append(path)

    def find(self, reference: str, where: str) -> Path:
        relative = reference_path(reference).lstrip("/")
        parts = [p for p in relative.split("/") if p not in ("", ".", "..")]
        for start in range(len(parts)):  # "data/upload/8/x.png", then "upload/8/x.png", ... "x.png"
            candidate = self.folder.joinpath(*parts[start:])
            if candidate.is_file() and candidate.resolve().is_relative_to(self.folder):
                return candidate
        name = parts[-1] if parts else reference
        for key in (name.casefold(), original_name(name).casefold() + Path(name).suffix.lower()):
            found = self.by_name.get(key, [])
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise UserError(f"{where}: image {reference} matches {len(found)} files in {self.folder} "
                                f"({', '.join(str(p.relative_to(self.folder)) for p in found[:3])}); keep one")
        raise UserError(f"{where}: image {reference} not found in {self.folder} (looked for {original_name(name)}"
                        f"{Path(name).suffix} by name and under its path)")


def chosen_annotation(task: dict) -> tuple[dict | None, int]:
    """The annotation to import (ground truth, else the latest not cancelled) and how many others."""
    live = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None, 0
    truth = [a for a in live if a.get("ground_truth")]
    pool = truth or live
    chosen = max(pool, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0))
    return chosen, len(live) - 1


def check_size(result: dict, size: tuple[int, int], image: Path, where: str) -> None:
    """The image found must be the one labeled: Label Studio's ``original_width``/``original_height``
    (when given) in the same proportions as the file (a smaller copy is fine: boxes are in percent)."""
    try:
        width, height = float(result["original_width"]), float(result["original_height"])
    except (KeyError, TypeError, ValueError):
        return
    if width > 0 and height > 0 and abs(width / height - size[0] / size[1]) > 0.01 * width / height:
        raise UserError(f"{where}: the image was labeled at {width:g}x{height:g} pixels, but {image} is "
                        f"{size[0]}x{size[1]}: not the same picture? Give --images the folder of the labeled images")


def boxes_of(annotation: dict, size: tuple[int, int], image: Path, where: str) -> tuple[list[Box], int]:
    """Pixel boxes of an annotation's rectangles, and how many other results (choices, relations) it has."""
    regions: dict[str, dict] = {}
    other = 0
    for index, result in enumerate(annotation.get("result") or []):
        if not isinstance(result, dict):
            raise UserError(f"{where}: result {index} is not an object")
        kind = result.get("type")
        value = as_dict(result.get("value"))
        if kind not in ("rectanglelabels", "rectangle", "labels"):
            other += 1
            continue
        region = regions.setdefault(str(result.get("id") or f"#{index}"), {})
        if all(k in value for k in GEOMETRY):
            region["value"] = value
            check_size(result, size, image, where)
        labels = value.get("rectanglelabels") or value.get("labels")
        if labels:
            region["labels"] = labels
    width, height = size
    boxes = []
    for region_id, region in regions.items():
        here = f"{where}, region {region_id}"
        if "value" not in region:
            raise UserError(f"{here}: a label without a rectangle")
        if "labels" not in region:
            raise UserError(f"{here}: a rectangle without a label; label it in Label Studio and export again")
        if len(region["labels"]) != 1:
            raise UserError(f"{here}: {len(region['labels'])} labels on one box ({', '.join(region['labels'])})")
        value = region["value"]
        try:
            x, y, w, h = (float(value[k]) for k in GEOMETRY)
            rotation = float(value.get("rotation") or 0)
        except (TypeError, ValueError):
            raise UserError(f"{here}: x, y, width and height must be numbers") from None
        if abs(rotation) > 1e-6:
            raise UserError(f"{here}: the box is rotated by {rotation:g} degrees; a question block is upright. "
                            f"Straighten it in Label Studio and export again")
        if not all(-1e-3 <= v <= 100 + 1e-3 for v in (x, y, w, h)) or x + w > 100.01 or y + h > 100.01 \
                or w <= 0 or h <= 0:
            raise UserError(f"{here}: x {x:g}, y {y:g}, width {w:g}, height {h:g} must lie in 0..100 (percent of "
                            f"the image)")
        label = str(region["labels"][0])
        boxes.append(Box(x / 100 * width, y / 100 * height, w / 100 * width, h / 100 * height, label))
    return boxes, other


def read_export(path: Path, images: Path | None, display: str) -> tuple[list[ImportedPage], list[str]]:
    tasks = load_tasks(path)
    if images is None:
        raise UserError(f"{path}: a Label Studio JSON export names its images but does not hold them; "
                        f"give the folder they came from with --images DIR")
    folder = ImageFolder(images)
    pages: list[ImportedPage] = []
    seen: dict[Path, str] = {}
    unlabeled = extra_annotations = other_results = 0
    for index, task in enumerate(tasks):
        where = f"{display}: task {task.get('id', f'#{index}')}"
        annotation, others = chosen_annotation(task)
        if annotation is None:
            unlabeled += 1
            continue
        extra_annotations += others
        reference = image_reference(task)
        if reference is None:
            raise UserError(f"{where}: no image in its data ({', '.join(task.get('data') or {}) or 'empty'})")
        image = folder.find(reference, where)
        if image in seen:
            raise UserError(f"{where}: image {reference} is also {seen[image]}'s; one page, one task")
        seen[image] = where
        size = image_size(image, where)
        boxes, other = boxes_of(annotation, size, image, where)
        other_results += other
        pages.append(ImportedPage(where, image, original_name(reference_path(reference)), boxes, size))
    notes = []
    if unlabeled:
        notes.append(f"{unlabeled} task(s) without an annotation: not labeled yet, not imported")
    if extra_annotations:
        notes.append(f"{extra_annotations} other annotation(s) of the same tasks left out (the ground truth, "
                     f"else the latest, is imported)")
    if other_results:
        notes.append(f"{other_results} result(s) that are not rectangles (choices, relations, ...) left out")
    return pages, notes

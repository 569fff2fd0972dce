"""Exports in YOLO's text format, as a folder or a zip of one.

- Roboflow's "YOLOv5 PyTorch", "YOLOv8" and "YOLOv11": ``train|valid|test/{images,labels}`` and
  ``data.yaml`` (``names``, ``nc``). File names carry ``_<ext>.rf.<id>`` (``IMG_12_jpg.rf.3f...jpg``),
  and augmented copies of one source image share the part before ``.rf.``: one copy per source
  page is imported (one from a valid or test split when there is one: Roboflow augments train
  only; else the first by name), and the skipped copies are counted.
- Label Studio's "YOLO": flat ``images/`` and ``labels/`` with ``classes.txt`` (or split folders
  with ``dataset.yaml``); image names start with Label Studio's 8-character upload id.

Rows are ``class x_center y_center width height`` in shares of the exported image, which becomes
the page (Roboflow may have resized it: its README says so), so boxes and pixels agree.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import yaml

from qblock.core.errors import UserError
from qblock.data.app_folder import IMAGE_SUFFIXES
from qblock.imports.pages import Box, ImportedPage, image_size, original_name, without_upload_ids

SPLITS = ("train", "valid", "val", "test")
_ROBOFLOW_COPY = re.compile(r"^(?P<source>.+)\.rf\.[A-Za-z0-9]{16,40}$")
_EXTENSION_MARKER = re.compile(r"_(jpe?g|png|bmp|webp|tiff?|heic|gif)$", re.IGNORECASE)


@contextmanager
def opened(path: Path) -> Iterator[Path]:
    """The export's folder: ``path`` itself, or a zip extracted to a temporary folder (no entry
    may leave it: absolute names, ``..`` and drive letters are refused)."""
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise UserError(f"{path}: no such export (a folder or a .zip)")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a folder or a zip file")
    folder = Path(tempfile.mkdtemp(prefix="qblock-import-"))
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = PurePosixPath(info.filename.replace("\\", "/"))
                if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
                    raise UserError(f"{path}: entry {info.filename!r} would be written outside the export's folder")
            archive.extractall(folder)
        yield folder
    except zipfile.BadZipFile as exc:
        raise UserError(f"{path}: damaged zip file ({exc})") from None
    except UserError as exc:  # name the zip the person gave, not the temporary folder it was unpacked into
        inside = str(exc).replace(f"{folder}{os.sep}", f"{path} > ").replace(str(folder), str(path))
        raise UserError(inside) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _names_from_yaml(path: Path) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            names = [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            raise UserError(f"{path}: `names` keys must be class ids 0, 1, ...") from None
    if not isinstance(names, list) or not names:
        raise UserError(f"{path}: no `names` list of classes")
    if "nc" in data and data["nc"] != len(names):
        raise UserError(f"{path}: nc is {data['nc']} but `names` lists {len(names)} classes")
    return [str(n) for n in names]


def _names_from_txt(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if not names:
        raise UserError(f"{path}: no class names")
    return names


def class_names(root: Path) -> tuple[list[str], Path]:
    """The class names (position = class id) and the file they came from. Where a data.yaml and
    Label Studio's classes.txt both name them, they must agree: the label files' ids follow one of
    them, and a hand-edited YAML in another order would silently swap classes."""
    found = [(_names_from_yaml(root / name), root / name)
             for name in ("data.yaml", "dataset.yaml", "data.yml") if (root / name).is_file()][:1]
    if (root / "classes.txt").is_file():
        found.append((_names_from_txt(root / "classes.txt"), root / "classes.txt"))
    if not found:
        raise UserError(f"{root}: no data.yaml, dataset.yaml or classes.txt naming the classes, so this "
                        "is not a YOLO export (images/ and labels/ beside a data.yaml). Export it again in YOLO or "
                        "COCO format; a Label Studio JSON export is imported with `qblock import label-studio "
                        "FILE.json --images FOLDER`. Nothing was written.")
    if len(found) == 2 and found[0][0] != found[1][0]:
        (a, file_a), (b, file_b) = found
        raise UserError(f"{file_a.name} names the classes {', '.join(a)} but {file_b.name} names {', '.join(b)}: "
                        f"the label files' class ids follow one of them. Remove the one that is wrong from {root}")
    return found[0]


def export_root(folder: Path) -> Path:
    """The folder holding data.yaml / classes.txt: ``folder`` or one level down (a zip's top folder)."""
    for candidate in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())):
        if any((candidate / n).is_file() for n in ("data.yaml", "dataset.yaml", "data.yml", "classes.txt")):
            return candidate
    return folder


def image_files(root: Path) -> list[tuple[str, Path]]:
    """(split, image) for every image in split folders (Roboflow's train/images, ultralytics'
    images/train), or in a flat images/ folder."""
    found = []
    for split in SPLITS:
        for images in (root / split / "images", root / "images" / split):
            if images.is_dir():
                found += [(split, p) for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not found and (root / "images").is_dir():
        found = [("", p) for p in sorted((root / "images").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise UserError(f"{root}: no images (looked for train/images, valid/images, test/images, images/train, "
                        f"images/val and images/)")
    return found


def label_of(image: Path) -> Path:
    """The label file of an image, as ultralytics finds it: the last `images` folder of the path read as
    `labels` (train/images/x.jpg -> train/labels/x.txt, images/val/x.jpg -> labels/val/x.txt)."""
    parts = list(image.parts)
    at = len(parts) - 1 - parts[::-1].index("images") if "images" in parts[:-1] else None
    if at is None:
        return image.with_suffix(".txt")
    parts[at] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(label: Path, size: tuple[int, int], names: list[str], rel: str,
                polygons: list[str] | None = None) -> list[Box]:
    """A label file's rows as pixel boxes of an image of ``size``; an error names the file and line.
    A polygon row (class and three or more x y points, as segmentation exports write) becomes the box
    around its points, as ultralytics reads it, and is listed in ``polygons``."""
    if not label.is_file():
        return []
    width, height = size
    boxes = []
    for number, line in enumerate(label.read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{rel} line {number}"
        if len(fields) >= 7 and len(fields) % 2 == 1:  # class + x y pairs: a polygon
            try:
                cls, points = int(fields[0]), [float(v) for v in fields[1:]]
            except ValueError:
                raise UserError(f"{where}: {line.strip()!r} is not a class id and numbers") from None
            xs, ys = points[0::2], points[1::2]
            fields = [fields[0], *(f"{v:.9f}" for v in ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2,
                                                        max(xs) - min(xs), max(ys) - min(ys)))]
            if polygons is not None:
                polygons.append(where)
        if len(fields) != 5:
            raise UserError(f"{where}: expected 5 fields (class x_center y_center width height) or a polygon "
                            f"(class and x y pairs), found {len(fields)}")
        try:
            cls = int(fields[0])
            x, y, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise UserError(f"{where}: {line.strip()!r} is not a class id and four numbers") from None
        if not 0 <= cls < len(names):
            raise UserError(f"{where}: class id {cls}, but the export names {len(names)} classes")
        if not all(-1e-6 <= v <= 1 + 1e-6 for v in (x, y, w, h)):
            raise UserError(f"{where}: coordinates must lie in 0..1 (shares of the image), found {line.strip()!r}")
        boxes.append(Box((x - w / 2) * width, (y - h / 2) * height, w * width, h * height, names[cls]))
    return boxes


def source_of(file_name: str) -> tuple[str, bool]:
    """The source image's name for a Roboflow copy (and True), else the file's own name (and False)."""
    stem = Path(file_name).stem
    match = _ROBOFLOW_COPY.match(stem)
    if match:  # the original's extension marker, twice for a re-uploaded Universe set (rgb_0000_png_jpg)
        source = match["source"]
        while (bare := _EXTENSION_MARKER.sub("", source)) != source:
            source = bare
        return without_upload_ids(source), True  # and Label Studio's upload ids, when it went through it first
    return original_name(file_name), False


def one_per_source(found: list[tuple[str, Path, str | None]], boxes: Callable[[Path], int]
                   ) -> tuple[list[tuple[str, Path]], int]:
    """(split, image, original name or None) -> one (source name, image) per source page, and how
    many copies were skipped. The un-augmented copy where it can be told: one in valid or test
    (Roboflow augments train only), else the one with the most boxes (crops and mosaics cut some
    off), else the first by name. Two different uploads sharing an original name keep their full
    names."""
    # A listed original name (COCO's extra.name) names the source; the file is still a Roboflow copy of it
    # when its own name says so, and copies fold into one page
    named = [(split, image, *((original, source_of(image.name)[1]) if original else source_of(image.name)))
             for split, image, original in found]
    uploads: dict[str, set[str]] = {}
    for _, image, source, roboflow in named:
        if not roboflow:
            uploads.setdefault(source, set()).add(image.name)
    by_source: dict[str, list[tuple[str, Path]]] = {}
    for split, image, source, roboflow in named:
        if not roboflow and len(uploads[source]) > 1:
            source = image.stem
        by_source.setdefault(source, []).append((split, image))
    chosen = []
    for source, copies in sorted(by_source.items()):
        copies.sort(key=lambda c: (c[0] == "train", -boxes(c[1]) if len(copies) > 1 else 0, c[1].name))
        chosen.append((source, copies[0][1]))
    return chosen, sum(len(c) for c in by_source.values()) - len(by_source)


def export_sides(found: list[tuple[str, Path, str | None]]) -> dict[Path, str]:
    """Each image's side in the export's own split (its folder: train, valid or val as val, test), or ""."""
    return {image: {"valid": "val"}.get(split, split) for split, image, _ in found}


def only_augmented(found: list[tuple[str, Path, str | None]], chosen: list[tuple[str, Path]]) -> list[str]:
    """The sources whose every copy is in train (which Roboflow augments), as 'source <- copy taken'."""
    splits: dict[Path, str] = {image: split for split, image, _ in found}
    counts = Counter(original or source_of(image.name)[0] for _, image, original in found)
    return [f"{source} <- {image.name}" for source, image in chosen
            if splits.get(image) == "train" and counts.get(source, 1) > 1]


def augment_note(root: Path, taken: list[str]) -> list[str]:
    """Which copy was taken for sources with augmented copies only, and the transforms Roboflow's README
    lists (a 90-degree rotation or a crop changes the page's geometry: check those pages in the app)."""
    if not taken:
        return []
    readmes = [root / "README.roboflow.txt", *sorted(root.glob("*/README.roboflow.txt"))]
    readme = next((r for r in readmes if r.is_file()), None)
    transforms: list[str] = []
    if readme is not None:
        lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()
        start = next((i for i, line in enumerate(lines) if line.strip().lower().startswith("augmentation")), None)
        for line in lines[start + 1:] if start is not None else []:
            if not line.strip().startswith(("*", "-")):
                break
            transforms.append(line.strip(" -*\t"))
    listed = f" (Roboflow's README lists: {'; '.join(transforms)})" if transforms else ""
    return [f"{len(taken)} source page(s) have only augmented copies, all in train{listed}; the copy with the "
            f"most boxes was taken, so check its geometry in the app: {', '.join(taken[:5])}"
            f"{' ...' if len(taken) > 5 else ''}"]


def copies_note(skipped: int, pages: int) -> list[str]:
    if not skipped:
        return []
    return [f"{skipped} augmented or duplicate cop{'y' if skipped == 1 else 'ies'} of {pages} source page(s) "
            f"skipped: one copy per page is imported"]


def resize_note(root: Path) -> list[str]:
    """What Roboflow's README says about resizing, from ``root`` or a folder in it."""
    readmes = [root / "README.roboflow.txt", *sorted(root.glob("*/README.roboflow.txt"))]
    readme = next((r for r in readmes if r.is_file()), None)
    if readme is None:
        return []
    resize = [line.strip(" -*\t") for line in readme.read_text(encoding="utf-8", errors="replace").splitlines()
              if line.strip(" -*\t").lower().startswith("resize")]
    return [f"Roboflow resized the pages ({resize[0]}): the exported images become the pages, so boxes and "
            f"pixels agree"] if resize else []


def read_export(folder: Path, display: str) -> tuple[list[ImportedPage], list[str]]:
    """The export's pages (one per source image) and notes for the person importing."""
    root = export_root(folder)
    names, names_file = class_names(root)

    def box_count(image: Path) -> int:
        label = label_of(image)
        return sum(1 for line in label.read_text(encoding="utf-8-sig").splitlines() if line.strip()) \
            if label.is_file() else 0

    found: list[tuple[str, Path, str | None]] = [(split, image, None) for split, image in image_files(root)]
    chosen, skipped = one_per_source(found, box_count)
    sides = export_sides(found)
    pages: list[ImportedPage] = []
    polygons: list[str] = []
    missing: list[str] = []
    for source, image in chosen:
        rel = image.relative_to(root).as_posix()
        size = image_size(image, f"{display}: {rel}")
        label = label_of(image)
        if not label.is_file():
            missing.append(label.relative_to(root).as_posix())
        boxes = read_labels(label, size, names, f"{display}: {label.relative_to(root).as_posix()}", polygons)
        pages.append(ImportedPage(f"{display}: {rel}", image, source, boxes, size, missing_labels=not label.is_file(),
                                  split=sides[image]))
    notes = [f"classes from {names_file.name}: {', '.join(names)}", *copies_note(skipped, len(pages)),
             *augment_note(root, only_augmented(found, chosen)), *resize_note(root)]
    if polygons:
        notes.append(f"{len(polygons)} polygon row(s) read as the box around their points: {'; '.join(polygons)}")
    if missing:
        notes.append(f"{len(missing)} image(s) have no label file (imported as pages with no questions): "
                     f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    return pages, notes

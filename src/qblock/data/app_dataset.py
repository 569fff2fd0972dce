"""The labeling app's dataset_root: `documents/{document}/pages/{page}.png` beside
`groups/{page}_groups.json`. The export stage, `qblock status` and the other readers of the
app's folder share this, so they all see the same pages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from qblock.core.errors import UserError
from qblock.data.labels import page_key
from qblock.data.problems import ProblemLog

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GROUPS_SUFFIX = "_groups.json"
_ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def read_image_size(path: Path, rel: str, log: ProblemLog) -> tuple[int, int] | None:
    """The image's displayed size (EXIF rotation applied), or None if it cannot be read."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            # A PNG's getexif() decodes the whole image looking for a late eXIf chunk; the header's
            # chunks are enough (and JPEG keeps EXIF in its header anyway).
            exif = image.getexif() if image.format != "PNG" else Image.Exif()
            if image.format == "PNG" and "exif" in image.info:
                exif.load(image.info["exif"])
            orientation = exif.get(0x0112, 1)
    except (UnidentifiedImageError, OSError) as exc:
        log.error(rel, f"cannot read the page image: {exc}")
        return None
    if orientation in _ROTATING_ORIENTATIONS:
        log.warning(rel, f"EXIF orientation {orientation} rotates the image; boxes are read in the rotated frame")
        return height, width
    return width, height


def read_groups(path: Path, rel: str, log: ProblemLog) -> list | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # Windows editors and PowerShell 5 write a BOM
    except UnicodeDecodeError:
        log.error(rel, "not UTF-8 text")
        return None
    except json.JSONDecodeError as exc:
        log.error(rel, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        return None
    if not isinstance(data, dict) or "groups" not in data:
        log.error(rel, "no `groups` list at the top level")
        return None
    if not isinstance(data["groups"], list):
        log.error(rel, f"`groups` is a {type(data['groups']).__name__}, not a list")
        return None
    return data["groups"]


class PageSource(NamedTuple):
    """One labeled page in the app's dataset: its groups file and page image (relative paths)."""

    key: str
    document: str
    page: str
    groups: str
    image: str | None
    groups_stat: list[int]  # [size, mtime_ns]
    image_stat: list[int] | None


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stat(entry: os.DirEntry) -> list[int]:
    stat = entry.stat()
    return [stat.st_size, stat.st_mtime_ns]


def check_pages_present(root: Path, dataset_root: Path) -> None:
    """Stop before the pipeline starts when the labeled pages are not on this machine (or in this copy).

    DVC alone would fail at the export stage with a bare "No such file or directory"; this says
    why the folder is missing and what brings it.
    """
    if (dataset_root / "documents").is_dir():
        return
    folder = dataset_root.relative_to(root).as_posix() if dataset_root.is_relative_to(root) else str(dataset_root)
    tracked = f"{folder}.dvc"
    queued = os.environ.get("DVC_ROOT") and Path(os.environ["DVC_ROOT"]).resolve() != root.resolve()
    if (root / tracked).is_file():
        how = f"DVC tracks it ({tracked}) but it is not checked out here: run `dvc pull {tracked}`."
    elif queued:
        how = ("This is a queued experiment: it runs in a temporary copy of the repository that holds only "
               "what git and DVC track. Track the pages, commit, and queue again:\n"
               f"  dvc add {folder}\n  git add {tracked}\n"
               "  git commit -m 'Track the labeled pages'")
    else:
        how = ("Point paths.dataset_root (conf/config.yaml) at the app's dataset_root, mirror it here with "
               f"`qblock publish --app PATH`, or write demo pages: `qblock demo-data {folder}`.")
    raise UserError(f"{folder}: no labeled pages here (no documents/ folder). {how}")


def scan_documents(dataset_root: Path) -> tuple[list[PageSource], int]:
    """Every groups file with its page image; also the count of page images with no groups file.

    One directory listing per folder (``os.scandir``; on Windows it carries the file times, so no
    file is opened or stat'ed twice), which keeps a re-run over 10,000 unchanged pages fast.
    """
    check_pages_present(Path.cwd(), dataset_root)
    documents_dir = dataset_root / "documents"
    sources: list[PageSource] = []
    unlabeled = 0
    for document in sorted((e for e in os.scandir(documents_dir) if e.is_dir()), key=lambda e: e.name):
        images: dict[str, os.DirEntry] = {}
        entries = _entries(documents_dir / document.name / "pages")
        for suffix in reversed(IMAGE_SUFFIXES):  # the earlier suffix wins: page_001.png over page_001.jpg
            images |= {e.name[: -len(suffix)]: e for e in entries if e.name.endswith(suffix)}
        labeled = set()
        for entry in sorted(_entries(documents_dir / document.name / "groups"), key=lambda e: e.name):
            if not entry.name.endswith(GROUPS_SUFFIX):
                continue
            page = entry.name[: -len(GROUPS_SUFFIX)]
            labeled.add(page)
            image = images.get(page)
            sources.append(PageSource(
                page_key(document.name, page), document.name, page,
                f"documents/{document.name}/groups/{entry.name}",
                f"documents/{document.name}/pages/{image.name}" if image else None,
                _stat(entry), _stat(image) if image else None,
            ))
        unlabeled += len(images.keys() - labeled)
    return sources, unlabeled

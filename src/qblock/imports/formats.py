"""The exports qblock reads, as two tables.

``FORMATS``: each file format with how it is recognised and read (its reader module turns it into
pages of the app's folder). ``TOOLS``: each labeling tool people come from, with the formats it
exports; each becomes a `qblock import TOOL` command (cli.py makes them from this table). A new
format is a reader module and a row here.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qblock.core.errors import UserError

if TYPE_CHECKING:
    from qblock.imports.pages import ImportedPage

# (the readers are imported when an import runs: `qblock --help` reads TOOLS and stays quick)
Read = tuple[list["ImportedPage"], list[str]]  # the export's pages, and notes to tell the person


def _label_studio(path: Path, images: Path | None, display: str) -> Read:
    from qblock.imports import label_studio

    return label_studio.read_export(path, images, display)


def _is_coco(folder: Path) -> bool:
    from qblock.imports import coco_export

    return any(folder.rglob(coco_export.ANNOTATIONS))


def _coco(folder: Path, _images: Path | None, display: str) -> Read:
    from qblock.imports import coco_export

    return coco_export.read_export(folder, display)


def _yolo(folder: Path, _images: Path | None, display: str) -> Read:
    from qblock.imports import yolo_export

    return yolo_export.read_export(folder, display)


@dataclass(frozen=True)
class Format:
    name: str
    in_folder: bool  # detect and read see the export's folder (a zip extracted), else the file given
    detect: Callable[[Path], bool]
    read: Callable[[Path, Path | None, str], Read]  # (export, images folder or None, name to show)


FORMATS = (
    Format("Label Studio JSON", False, lambda path: path.is_file() and path.suffix.lower() == ".json", _label_studio),
    Format("COCO JSON", True, _is_coco, _coco),
    Format("YOLO", True, lambda folder: True, _yolo),  # tried last: its reader says what a folder lacks
)


@dataclass(frozen=True)
class Tool:
    name: str  # the `qblock import` command
    summary: str  # the command's help
    export: str  # the help of its export argument
    formats: tuple[str, ...]  # tried in this order
    images: bool = False  # whether its exports may keep the images elsewhere (--images)


TOOLS = (
    Tool("roboflow", "Import a Roboflow export: one copy per source page (augmented copies skipped), boxes in pixels.",
         "the export: a folder or its .zip (YOLOv5/v8/v11 or COCO JSON)", ("COCO JSON", "YOLO")),
    Tool("label-studio", "Import a Label Studio export of rectangles: one annotation per task, boxes in pixels.",
         "the JSON export (or a YOLO export's folder or .zip)", ("Label Studio JSON", "COCO JSON", "YOLO"),
         images=True),
)


def tool(name: str) -> Tool:
    found = next((t for t in TOOLS if t.name == name), None)
    if found is None:
        raise UserError(f"unknown export kind {name!r}: {', '.join(t.name for t in TOOLS)}")
    return found


def _formats(of: Tool) -> list[Format]:
    return [f for name in of.formats for f in FORMATS if f.name == name]


@contextmanager
def read(tool_name: str, path: Path, images: Path | None) -> Iterator[Read]:
    """The export's pages and notes, in the first of the tool's formats that recognises it, while its
    files are there (a zip stays extracted until the block ends)."""
    formats = _formats(tool(tool_name))
    for form in formats:
        if not form.in_folder and form.detect(path):
            yield form.read(path, images, path.name)
            return
    if path.is_file() and not zipfile.is_zipfile(path):
        elsewhere = [(t.name, f.name) for t in TOOLS for f in _formats(t) if not f.in_folder and f.detect(path)]
        raise UserError(f"{path}: a {tool_name} export ({' or '.join(f.name for f in formats)}) is a folder or its "
                        "zip, and this is neither" + "".join(f"; it looks like a {form} export: `qblock import "
                                                            f"{other} {path}`" for other, form in elsewhere[:1]))
    from qblock.imports.yolo_export import opened

    with opened(path) as folder:
        found = next((f for f in formats if f.in_folder and f.detect(folder)), None)
        if found is None:
            raise UserError(f"{path}: not a {' or '.join(f.name for f in formats)} export")
        yield found.read(folder, images, path.name)

"""The flat YOLO folder the export stage writes (`images/`, `labels/`, `manifest.json`) and the
split lists beside it. The manifest's page record is read and written here only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qblock.core.errors import UserError
from qblock.data.problems import write_json

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")


@dataclass
class PageRecord:
    """One exported page: where it came from (and the stats that say whether it changed), its labels."""

    key: str  # the flat name, `{document}__{page}`
    document: str
    page: str
    image: str  # the page image, relative to the app's dataset_root
    width: int
    height: int
    groups_stat: list[int]  # [size, mtime_ns] of the groups file when exported
    image_stat: list[int] | None
    labels: str  # the YOLO label file's text
    boxes: int
    problems: list[dict[str, str]] = field(default_factory=list)  # warnings, kept for re-runs

    @property
    def image_name(self) -> str:
        """The image's name in the YOLO folder."""
        return self.key + Path(self.image).suffix.lower()

    @property
    def label_name(self) -> str:
        return self.key + ".txt"


@dataclass
class Manifest:
    summary: dict[str, Any]
    pages: list[PageRecord]


def read_manifest(export_dir: Path) -> Manifest:
    """The export's manifest; a UserError naming the file when it is missing or not what export writes."""
    path = export_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Manifest(data["summary"], [PageRecord(**page) for page in data["pages"]])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read the export manifest ({exc}); run the export stage") from None


def write_manifest(export_dir: Path, manifest: Manifest) -> None:
    write_json(export_dir / MANIFEST, {"summary": manifest.summary, "pages": [asdict(p) for p in manifest.pages]},
               compact=True)


def split_list(split_dir: Path, split: str) -> list[str] | None:
    """The entries (`images/NAME`) of one split list; None when the split has no list."""
    path = split_dir / f"{split}.txt"
    if not path.is_file():
        return None
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_counts(export_dir: Path, entries: list[str]) -> tuple[int, int]:
    """(pages, boxes) of a split list's entries: each label file's non-empty rows."""
    boxes = 0
    for entry in entries:
        label = export_dir / "labels" / f"{Path(entry).stem}.txt"
        if label.is_file():
            boxes += sum(1 for line in label.read_text(encoding="utf-8").splitlines() if line.strip())
    return len(entries), boxes

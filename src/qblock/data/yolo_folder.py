"""The flat YOLO folder the export stage writes (`images/`, `labels/`, `manifest.json`) and the
split lists beside it. The manifest's page record is read and written here only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from qblock.core.errors import UserError
from qblock.data.problems import write_json

MANIFEST = "manifest.json"
# The files' sizes and mtimes that tell export which pages changed are this machine's, so they are
# kept beside the project (untracked), not in the manifest: the export folder's content, and so its
# hash in dvc.lock, is then the same on every machine, and a laptop that pulled the desktop's commit
# does not find its export "changed" (which made a new commit, and the desktop retrain, for nothing).
STATS = Path(".qblock") / "export_stats.json"
LOCAL_FIELDS = ("groups_stat", "image_stat")
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
    groups_stat: list[int]  # [size, mtime_ns] of the groups file when exported (this machine's: see STATS)
    image_stat: list[int] | None
    labels: str  # the YOLO label file's text
    boxes: int
    problems: list[dict[str, str]] = field(default_factory=list)  # warnings, kept for re-runs
    flat: bool = False  # transparent or 16-bit: exported as a flattened 8-bit copy (in the manifest when true)

    @property
    def image_name(self) -> str:
        """The image's name in the YOLO folder."""
        return image_name_for(self.key, self.image)

    @property
    def label_name(self) -> str:
        return self.key + ".txt"


@dataclass
class Manifest:
    summary: dict[str, Any]
    pages: list[PageRecord]


def read_manifest(export_dir: Path, with_stats: bool = False) -> Manifest:
    """The export's manifest; a UserError naming the file when it is missing or not what export writes.

    ``with_stats``: with this machine's file stats of the sources (export needs them; the stages after it
    do not, and at 100,000 pages reading them costs a second)."""
    summary, plain = read_pages(export_dir)
    stats = _read_stats(export_dir) if with_stats else {}
    unknown: dict[str, Any] = {"groups_stat": [], "image_stat": None}
    try:
        return Manifest(summary, [PageRecord(**(unknown | page | stats.get(page["key"], unknown))) for page in plain])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{export_dir / MANIFEST}: cannot read the export manifest ({exc}); run the export stage") \
            from None


def read_pages(export_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest's summary and its pages as plain dicts (`key`, `document`, `image`, ... as in PageRecord),
    for the stages that only read a few fields: at 100,000 pages, building the records costs half a second."""
    path = export_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["summary"], data["pages"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read the export manifest ({exc}); run the export stage") from None


def image_name_for(key: str, image: str) -> str:
    """A page's image name in the YOLO folder: its key and the source's suffix (string work: at 100,000
    pages, a Path per name costs a second)."""
    return key + "." + image.rpartition(".")[2].lower()


def image_name(page: dict[str, Any]) -> str:
    """A plain page's (read_pages) image name in the YOLO folder."""
    return image_name_for(page["key"], page["image"])


def _read_stats(export_dir: Path) -> dict[str, dict[str, Any]]:
    """This machine's file stats of the pages last exported to ``export_dir``; empty when unknown."""
    try:
        data = json.loads(STATS.read_text(encoding="utf-8"))
        # the folder as the stage names it (relative to the project): a moved or copied project keeps its stats
        return data["pages"] if data.get("export_dir") == export_dir.as_posix() else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


_RECORD_FIELDS = tuple(f.name for f in fields(PageRecord) if f.name not in LOCAL_FIELDS and f.name != "flat")


def _as_json(record: PageRecord) -> dict[str, Any]:
    """A record as the manifest holds it: no local stats, and `flat` only when true, so manifests of
    pages that need no flattening read as they always did (and DVC sees no change)."""
    data = {name: getattr(record, name) for name in _RECORD_FIELDS}  # not asdict: it deep-copies, 10x the time
    if record.flat:
        data["flat"] = True
    return data


def write_manifest(export_dir: Path, manifest: Manifest) -> None:
    pages = [_as_json(p) for p in manifest.pages]
    stats = {p.key: {"groups_stat": p.groups_stat, "image_stat": p.image_stat} for p in manifest.pages}
    write_json(export_dir / MANIFEST, {"summary": manifest.summary, "pages": pages}, compact=True)
    STATS.parent.mkdir(parents=True, exist_ok=True)
    write_json(STATS, {"export_dir": export_dir.as_posix(), "pages": stats}, compact=True)


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

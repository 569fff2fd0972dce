"""The flat YOLO folder the export stage writes (`images/`, `labels/`, `manifest.json`) and the
split lists beside it. The manifest's page record is read and written here only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from qblock.core.errors import UserError
from qblock.data.app_folder import DOCUMENTS, PAGES
from qblock.data.document_files import DocumentFiles
from qblock.data.labels import page_key, safe_name
from qblock.data.problems import write_json

MANIFEST = "manifest.json"
# The files' sizes and mtimes that tell export which pages changed are this machine's, so they are
# kept beside the project (untracked), not in the manifest: the export folder's content, and so its
# hash in dvc.lock, is then the same on every machine, and a laptop that pulled the desktop's commit
# does not find its export "changed" (which made a new commit, and the desktop retrain, for nothing).
# One small index (a fingerprint per document) and one file per document that changed: a re-run
# over 100,000 pages reads the stats of the documents whose files changed, not all of them.
STATS = Path(".qblock") / "export_stats.json"
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
    labels: str | None  # the YOLO label file's text; None for a page carried over unchanged (it is on disk)
    boxes: int
    problems: list[dict[str, str]] = field(default_factory=list)  # warnings, kept for re-runs
    flat: bool = False  # transparent or 16-bit: exported as a flattened 8-bit copy (in the manifest when true)
    split: str | None = None  # the side `qblock import --keep-split` keeps it on; None: the split by document

    @property
    def image_name(self) -> str:
        """The image's name in the YOLO folder."""
        return image_name_for(self.key, self.image)

    @property
    def label_name(self) -> str:
        return self.key + ".txt"


@dataclass
class DocumentRecord:
    """One exported document: its pages (in order) and how many of its page images have no groups file."""

    pages: list[PageRecord]
    unlabeled: int = 0

    def as_json(self) -> dict[str, Any]:
        """The document as the manifest holds it: no local stats, and a page's `flat` and `problems` only
        when it has them."""
        pages: list[list[Any]] = []
        for p in self.pages:
            entry: list[Any] = [p.page, p.image.rpartition("/")[2], p.width, p.height, p.boxes]
            extra: dict[str, Any] = {}
            if p.flat:
                extra["flat"] = True
            if p.problems:
                extra["problems"] = p.problems
            if p.split:
                extra["split"] = p.split
            if extra:
                entry.append(extra)
            pages.append(entry)
        return {"unlabeled": self.unlabeled, "pages": pages}


@dataclass
class Manifest:
    """The manifest as read: its summary and each document as the file holds it (`{"unlabeled": N, "pages":
    [[page, image file, width, height, boxes], ...]}`, a page's list ending in `{"flat": true, "problems":
    [...], "split": "val"}` when it has any of them). A page's `key`, `image` and file names follow from its
    document and page."""

    summary: dict[str, Any]
    documents: dict[str, dict[str, Any]]

    def records(self, document: str, stats: dict[str, list] | None = None) -> DocumentRecord:
        """One document's pages as records, with this machine's ``stats`` of them (page -> [groups_stat,
        image_stat]) when known."""
        data, stats = self.documents[document], stats or {}
        records = []
        for entry in data["pages"]:
            page, image_file, width, height, boxes = entry[:5]
            extra = entry[5] if len(entry) > 5 else {}
            groups_stat, image_stat = stats.get(page, ([], None))
            records.append(PageRecord(page_key(document, page), document, page,
                                      f"{DOCUMENTS}/{document}/{PAGES}/{image_file}", width, height, groups_stat,
                                      image_stat, None, boxes, extra.get("problems", []), extra.get("flat", False),
                                      extra.get("split")))
        return DocumentRecord(records, data.get("unlabeled", 0))

    @property
    def pages(self) -> list[PageRecord]:
        return [page for name in self.documents for page in self.records(name).pages]


def kept_problems(data: dict[str, Any]) -> list[dict[str, str]]:
    """The warnings the pages of a document as the manifest holds it were exported with (said again when
    the document is carried over unchanged)."""
    return [problem for entry in data["pages"] if len(entry) > 5 for problem in entry[5].get("problems", [])]


def file_names(document: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    """(image name, label name) in the YOLO folder of each page of a document as the manifest holds it."""
    prefix = safe_name(document) + "__"  # page_key, with the document's part made once (100,000 pages a run)
    return [(key + "." + image.rpartition(".")[2].lower(), key + ".txt")
            for key, image in ((prefix + safe_name(entry[0]), entry[1]) for entry in data["pages"])]


def kept_splits(data: dict[str, Any]) -> list[str | None]:
    """The side each page of a document keeps (`qblock import --keep-split`), None for the split by
    document, in the order of file_names."""
    return [entry[5].get("split") if len(entry) > 5 else None for entry in data["pages"]]


def read_manifest(export_dir: Path) -> Manifest:
    """The export's manifest; a UserError naming the file when it is missing or not what export writes."""
    path = export_dir / MANIFEST
    try:
        data = orjson.loads(path.read_bytes())
        summary, documents = data["summary"], data["documents"]
        if not isinstance(summary, dict) or not isinstance(documents, dict) \
                or not all(isinstance(d, dict) and isinstance(d.get("pages"), list) for d in documents.values()):
            raise TypeError("not a manifest of documents and their pages")
        return Manifest(summary, documents)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read the export manifest ({exc}); run the export stage") from None


def image_name_for(key: str, image: str) -> str:
    """A page's image name in the YOLO folder: its key and the source's suffix (string work: at 100,000
    pages, a Path per name costs a second)."""
    return key + "." + image.rpartition(".")[2].lower()


def write_manifest(export_dir: Path, manifest: Manifest, fingerprints: dict[str, str],
                   page_stats: dict[str, DocumentRecord], removed: Iterable[str] = ()) -> None:
    """The manifest, then this machine's stats: a fingerprint per document (of its files' names, sizes and
    times) and the page stats of the documents in ``page_stats`` (those looked at again); ``removed``: documents
    whose stats go."""
    write_json(export_dir / MANIFEST, {"summary": manifest.summary, "documents": manifest.documents}, compact=True)
    for name, document in page_stats.items():
        page_files(export_dir).write(name, {p.page: [p.groups_stat, p.image_stat] for p in document.pages})
    for name in removed:
        page_files(export_dir).remove(name)
    write_json(STATS, {"export_dir": export_dir.as_posix(), "documents": fingerprints}, compact=True)


def page_files(export_dir: Path) -> DocumentFiles:
    """This machine's stats of each document's pages exported to ``export_dir``: page -> [groups_stat,
    image_stat]."""
    return DocumentFiles(STATS.with_suffix(""), export_dir.as_posix())


def read_fingerprints(export_dir: Path) -> dict[str, str]:
    """This machine's fingerprint of each document last exported to ``export_dir``; empty when unknown."""
    try:
        data = orjson.loads(STATS.read_bytes())
        # the folder as the stage names it (relative to the project): a moved or copied project keeps its stats
        return data["documents"] if data.get("export_dir") == export_dir.as_posix() else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


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

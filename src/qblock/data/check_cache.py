"""What validate found clean, per document, so a re-run checks only the documents whose exported files
changed: how it is kept on disk, and nothing else (validate decides what is clean).

The index (``path``, JSON) has, for each document, ``fp`` (a fingerprint of its exported files' names,
sizes and times, and the class count) and what the statistics and the duplicate check need of its pages:
their image ``names`` and content ``digests`` (each packed in one string: at 100,000 pages, a few strings
a document rather than two objects a page), label ``rows``, the ``boxes`` count, and the ``warnings`` its
pages drew (said again when it is carried over: the report is the same either way). Every box's width and
height sit in ``path``.npy, a document's after the one before it; each document's per-page facts (image
name -> [size, mtime_ns, width, height]) in a file of its own, read only when that document changed.

A document is carried over whole while its fingerprint holds; in one that changed, an image is read again
only when its size or time changed. Only documents found clean are kept. The whole cache belongs to the
code that filled it (``code``: validate's import closure): other code checks every page again.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from qblock.core import files
from qblock.core.code_closure import code_digest
from qblock.data.document_files import DocumentFiles
from qblock.data.problems import write_json

DIGEST_CHARS = 32  # an image's blake2b of 16 bytes, in hex
VERSION = 4


def content_digest(data: bytes) -> str:
    """The digest kept for an image's bytes (the same page exported twice has the same one)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class CarriedDocument(NamedTuple):
    """A document as validate found it clean last time."""

    names: list[str]  # its image names
    digests: list[str]  # each image's content digest
    rows: list[int]  # each page's label row count
    boxes: Any  # n x 2: every box's width and height
    warnings: list[list[str]]  # [file, message] of the warnings its pages drew


class CheckCache:
    def __init__(self, path: Path) -> None:
        import numpy as np

        self.path, self.boxes_path = path, path.with_suffix(".npy")
        self.page_files = DocumentFiles(path.with_suffix(""))
        self.code = code_digest("qblock.stages.validate")  # other checks: every document is checked again
        self.entries: dict[str, dict] = {}
        self.boxes = np.zeros((0, 2))
        try:
            data = orjson.loads(path.read_bytes())
            raw = self.boxes_path.read_bytes()
            if data.get("version") == VERSION and data.get("code") == self.code \
                    and data.get("boxes_digest") == content_digest(raw):
                self.boxes = np.load(io.BytesIO(raw))
                self.entries = data["documents"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        self.offsets: dict[str, int] = {}
        offset = 0
        for name, entry in self.entries.items():
            self.offsets[name] = offset
            offset += entry["boxes"]
        self.fresh: dict[str, dict] = {}
        self.fresh_boxes: dict[str, Any] = {}
        self.fresh_stamps: dict[str, dict] = {}

    def carry_over(self, document: str, fingerprint: str) -> CarriedDocument | None:
        """The document as found clean last time, kept as it was, when its files' ``fingerprint`` is
        unchanged; else None (it is checked again)."""
        known = self.entries.get(document)
        if known is None or known["fp"] != fingerprint:
            return None
        start = self.offsets[document]
        boxes = self.boxes[start : start + known["boxes"]]
        self.fresh[document], self.fresh_boxes[document] = known, boxes
        names, digests = _unpacked(known)
        return CarriedDocument(names, digests, known["rows"], boxes, known.get("warnings", []))

    def earlier_pages(self, document: str) -> dict[str, list]:
        """For a document that changed: image name -> [size, mtime_ns, width, height, digest] of each image
        found clean last time (an image whose size and time are the same is not read again)."""
        known = self.entries.get(document)
        if known is None:
            return {}
        stamps = self.page_files.read(document)
        return {name: [*stamps[name][:4], digest] for name, digest in zip(*_unpacked(known), strict=True)
                if name in stamps}

    def keep(self, document: str, fingerprint: str, pages: dict[str, list], rows: list[int], boxes: Any,
             warnings: list[list[str]]) -> None:
        """Record a document found clean: ``pages`` image name -> [size, mtime_ns, width, height, digest]
        (in its order), each page's label ``rows``, its ``boxes`` (n x 2) and the warnings it drew."""
        self.fresh[document] = {"fp": fingerprint, "names": "\n".join(pages),
                                "digests": "".join(facts[4] for facts in pages.values()), "rows": rows,
                                "boxes": len(boxes), **({"warnings": warnings} if warnings else {})}
        self.fresh_boxes[document] = boxes
        self.fresh_stamps[document] = {name: facts[:4] for name, facts in pages.items()}

    def save(self) -> None:
        """Write what was found clean; nothing when every document was carried over as it was."""
        import numpy as np

        if not self.fresh_stamps and list(self.fresh) == list(self.entries):
            return
        for document, stamps in self.fresh_stamps.items():
            if document in self.fresh:
                self.page_files.write(document, stamps)
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate([self.fresh_boxes[d] for d in self.fresh] or [np.zeros((0, 2))]))
        raw = buffer.getvalue()
        self.boxes_path.parent.mkdir(parents=True, exist_ok=True)
        files.write_bytes(self.boxes_path, raw)
        write_json(self.path, {"version": VERSION, "code": self.code, "boxes_digest": content_digest(raw),
                               "documents": self.fresh}, compact=True)


def _unpacked(known: dict) -> tuple[list[str], list[str]]:
    """A kept document's image names and their digests, as packed by ``keep``."""
    names = known["names"].split("\n")
    return names, list(map(known["digests"].__getitem__, _digest_slices(len(names))))


@lru_cache(maxsize=1024)
def _digest_slices(count: int) -> list[slice]:
    """The slices of ``count`` digests kept end to end in one string."""
    return [slice(i, i + DIGEST_CHARS) for i in range(0, count * DIGEST_CHARS, DIGEST_CHARS)]

"""One small JSON file per document, beside a stage's cache index: what a stage keeps of each page of a
document (sizes and times, image sizes), read only for the documents that changed. At 100,000 pages a
re-run then reads a few files, not one object per page. Used by export (the app's files it converted)
and validate (the exported files it checked)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from qblock.data.problems import write_json


class DocumentFiles:
    """The files in ``folder``, one a document, named by a hash of ``scope`` (what else the facts depend
    on, such as the export folder) and the document's name; each holds the name, so a clash reads as empty."""

    def __init__(self, folder: Path, scope: str = "") -> None:
        self.folder, self.scope = folder, scope

    def path(self, document: str) -> Path:
        key = f"{self.scope}\0{document}" if self.scope else document
        name = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=10).hexdigest()
        return self.folder / f"{name}.json"

    def read(self, document: str) -> dict[str, Any]:
        """The document's pages as written (page -> facts); empty when unknown or unreadable."""
        try:
            data = orjson.loads(self.path(document).read_bytes())
            return data["pages"] if data["document"] == document else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def write(self, document: str, pages: dict[str, Any]) -> None:
        write_json(self.path(document), {"document": document, "pages": pages}, compact=True)

    def remove(self, document: str) -> None:
        self.path(document).unlink(missing_ok=True)

"""The sha256 of each export image an import has read, kept by the file's path, size and modification time.

An import compares every page's image bytes with what earlier imports wrote (the same page again, or a copy
under another name), so each run hashed every image: 100 scanned pages of 42 megapixels are 2.8 GB to read
for an export that has not changed. A file whose path, size and modification time are what they were when it
was hashed is not read again (how git, make and rsync tell a file unchanged). The cache is this machine's
(`.qblock/cache/import-digests.json`, never committed); a missing or unreadable one is started over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from qblock.core import files

if TYPE_CHECKING:
    from qblock.imports.pages import ImportedPage

CACHE = Path(".qblock") / "cache" / "import-digests.json"
VERSION = 1


class DigestCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, list] = {}
        self.changed = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("files"), dict):
                self.known = data["files"]
        except (OSError, ValueError):
            pass

    @staticmethod
    def _key(image: Path) -> tuple[str, list[int]] | None:
        try:
            stat = image.stat()
        except OSError:
            return None
        return str(image.resolve()), [stat.st_size, stat.st_mtime_ns]

    def lookup(self, image: Path) -> str:
        """The file's sha256 when it is unchanged since it was hashed, else ""."""
        key = self._key(image)
        if key is None:
            return ""
        entry = self.known.get(key[0])
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == key[1] and isinstance(entry[2], str):
            return entry[2]
        return ""

    def remember(self, image: Path, digest: str) -> None:
        key = self._key(image)
        if key is not None and self.known.get(key[0]) != [*key[1], digest]:
            self.known[key[0]] = [*key[1], digest]
            self.changed = True

    def save(self) -> None:
        """Write the cache, without the files that are gone (a zip's pages, extracted to a folder removed
        after each import)."""
        if not self.changed:
            return
        kept = {path: entry for path, entry in self.known.items() if os.path.exists(path)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            files.write_text(self.path, json.dumps({"version": VERSION, "files": kept}))
        except OSError:
            pass  # a cache that cannot be written only costs the next import its time


@contextmanager
def kept(found: list[ImportedPage], path: Path) -> Iterator[None]:
    """The pages' digests filled in from the cache at ``path`` where their files are unchanged; when the
    block ends (well or not), every digest the import made is remembered."""
    cache = DigestCache(path)
    for page in found:
        page.digest = page.digest or cache.lookup(page.image)
    try:
        yield
    finally:
        for page in found:
            if page.digest:
                cache.remember(page.image, page.digest)
        cache.save()

"""Replacing and removing files that may be hard links into DVC's cache.

qblock never writes into an existing page file (that would rewrite every file sharing its bytes,
a cache object included): it writes a new file and renames it over the old one, or removes the
old one. Where the cache shares storage with the work tree, DVC marks those files read-only. On
Linux and macOS that does not stop a rename or a removal (the folder's permissions decide); on
Windows it does, so there the read-only attribute is cleared first. The attribute belongs to the
file, not to one of its names, so the cache object loses DVC's protection too, never its content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _writable(path: Path) -> None:
    os.chmod(path, stat.S_IREAD | stat.S_IWRITE)


def replace(new: Path, target: Path) -> None:
    """Rename ``new`` over ``target`` (a read-only ``target`` too)."""
    try:
        os.replace(new, target)
    except PermissionError:
        if not target.exists():
            raise
        _writable(target)
        os.replace(new, target)


def remove(path: Path) -> None:
    """Remove ``path`` (a read-only file too)."""
    try:
        os.unlink(path)
    except PermissionError:
        _writable(path)
        os.unlink(path)

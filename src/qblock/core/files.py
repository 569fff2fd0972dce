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
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def written(target: Path) -> Iterator[Path]:
    """A new file beside ``target`` to write, renamed over ``target`` when the block ends well and removed
    when it does not: a crash or an error leaves the old file whole, never half a new one. The name carries
    the process id, so two processes writing one file never share it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(target: Path, text: str) -> None:
    """``text`` (UTF-8) into ``target`` whole or not at all (``written``)."""
    with written(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(target: Path, data: bytes) -> None:
    """``data`` into ``target`` whole or not at all (``written``)."""
    with written(target) as tmp:
        tmp.write_bytes(data)

"""YOLO detection label rows: ``class x_center y_center width height``, each in 0..1."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class LabelRow:
    cls: int
    x: float  # centre, share of the image width
    y: float
    w: float
    h: float

    def format(self) -> str:
        return f"{self.cls} {self.x:.6f} {self.y:.6f} {self.w:.6f} {self.h:.6f}"

    def to_pixels(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Corners (x0, y0, x1, y1) in pixels."""
        return (
            (self.x - self.w / 2) * width,
            (self.y - self.h / 2) * height,
            (self.x + self.w / 2) * width,
            (self.y + self.h / 2) * height,
        )


def parse_fields(fields: list[str], class_count: int) -> LabelRow:
    """One label line's fields as a row; raise ValueError saying what is wrong with it. A plainly valid row
    (the common case at 100,000 pages) is taken fast; anything else goes through each check in turn."""
    if len(fields) == 5 and fields[0].isdigit():
        try:
            cls, x, y, w, h = int(fields[0]), float(fields[1]), float(fields[2]), float(fields[3]), float(fields[4])
        except ValueError:
            pass
        else:
            if cls < class_count and 0 < w <= 1 and 0 < h <= 1 and w / 2 <= x <= 1 - w / 2 and h / 2 <= y <= 1 - h / 2:
                return LabelRow(cls, x, y, w, h)
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (class x y w h), found {len(fields)}")
    try:
        cls = int(fields[0])
    except ValueError:
        raise ValueError(f"class id {fields[0]!r} is not an integer") from None
    if not 0 <= cls < class_count:
        raise ValueError(f"class id {cls} is outside 0..{class_count - 1}")
    try:
        x, y, w, h = (float(v) for v in fields[1:])
    except ValueError:
        raise ValueError("coordinates must be numbers") from None
    if not all(0.0 <= v <= 1.0 for v in (x, y, w, h)):  # NaN fails this too
        raise ValueError("coordinates must lie in 0..1")
    if w <= 0 or h <= 0:
        raise ValueError("width and height must be positive")
    if x - w / 2 < -1e-6 or y - h / 2 < -1e-6 or x + w / 2 > 1 + 1e-6 or y + h / 2 > 1 + 1e-6:
        raise ValueError("box runs off the image")
    return LabelRow(cls, x, y, w, h)


def parse_row(line: str, class_count: int) -> LabelRow:
    """Parse one label line; raise ValueError saying what is wrong with it."""
    return parse_fields(line.split(), class_count)


def parse_clean(text: str) -> list[LabelRow]:
    """Rows of a label text validate has already checked."""
    return [LabelRow(int(f[0]), float(f[1]), float(f[2]), float(f[3]), float(f[4]))
            for f in map(str.split, text.splitlines()) if f]


MAX_NAME_BYTES = 60  # of a document's or a page's part of a flat name, before the hash


@lru_cache(maxsize=65536)  # page names (page_001, ...) repeat in every document
def safe_name(text: str) -> str:
    """A file-name-safe form of an id: letters of any script, digits, '.', '-', '_'.

    When the id had to change (spaces, slashes, a leading dot), a short hash of the original is
    appended so two ids never map to one name; the result never leaves its folder. A long id is
    cut to MAX_NAME_BYTES of UTF-8 (Korean letters take 3) with the same hash: a page's flat name,
    document and page, stays well inside a file system's 255 bytes and Windows' 260-character paths.
    """
    text = unicodedata.normalize("NFC", text)
    safe = re.sub(r"[^\w.-]+", "_", text).strip("._") or "_"
    if len(safe.encode("utf-8")) > MAX_NAME_BYTES:
        safe = safe.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip("._-") or "_"
    if safe != text:
        safe = f"{safe}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:6]}"
    return safe


def page_key(document: str, page: str) -> str:
    """The flat YOLO name of a page: its document and page, so page_001 never collides."""
    return f"{safe_name(document)}__{safe_name(page)}"

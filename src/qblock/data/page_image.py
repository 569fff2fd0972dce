"""A page image as every part of qblock sees it: 8-bit RGB on white paper.

PDF-to-PNG tools often write pages with a transparent background (RGBA, LA, or a palette with a
transparent entry) and sometimes 16-bit greys. Read naively, both go blank: OpenCV (training)
drops the alpha channel and sees the transparent paper's colour, usually black; PIL's
``convert("L")`` of a 16-bit grey clips every value above 255 to white. Here transparency is laid
onto white paper and 16-bit greys are scaled to 8 bits, once, for export (which then writes such a
page as a flattened copy instead of linking it), propose and ink snapping.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits a pixel
# A page is at most this many pixels: an A3 page scanned at 600 dpi is 70 million. Beyond it, a file is
# refused by name before it is decoded (PIL's own guard raises at 179 million and only warns below).
MAX_PAGE_PIXELS = 100_000_000


def size_problem(size: tuple[int, int]) -> str | None:
    """Why a page of ``size`` pixels is refused, or None."""
    width, height = size
    if width * height <= MAX_PAGE_PIXELS:
        return None
    return (f"{width}x{height} is {width * height / 1e6:.0f} million pixels, more than a page needs (at most "
            f"{MAX_PAGE_PIXELS // 1_000_000} million; an A3 page at 600 dpi is 70): scale it down")


@contextmanager
def page_limits() -> Iterator[None]:
    """Open page images with qblock's pixel limit instead of PIL's (which warns, then raises its own error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def needs_flattening(image: Image.Image) -> bool:
    """Whether the page has transparency or more than 8 bits a pixel (read from the header alone)."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or image.mode in WIDE_MODES or \
        (image.mode == "P" and "transparency" in image.info)


def as_page(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: transparency onto white, wide greys scaled (not clipped) to 0-255."""
    if image.mode in WIDE_MODES:
        values = np.asarray(image, dtype=np.float64)
        # 16-bit PNGs span 0-65535; a 32-bit integer or float page, whatever its largest value is
        top = 65535.0 if image.mode.startswith("I;16") else max(255.0, float(values.max(initial=0)))
        scaled = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return image.convert("RGB")

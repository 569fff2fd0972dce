"""Page pictures side by side in one image, for a person to look at (sample pages, worst pages)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

GAP = 8


def save_contact_sheet(tiles: list[Image.Image], out: Path) -> None:
    """Paste `tiles` left to right on a gray sheet and save it to `out` (nothing is written for no tiles)."""
    if not tiles:
        return
    height = max(t.height for t in tiles)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + GAP * (len(tiles) + 1), height + 2 * GAP), "gray")
    x = GAP
    for tile in tiles:
        sheet.paste(tile, (x, GAP))
        x += tile.width + GAP
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)

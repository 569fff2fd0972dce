"""Page pictures side by side in one image, for a person to look at (sample pages, worst pages)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

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


TILE_HEIGHT = 1000  # pixels of a page in a picture: a question's text is legible, a label 20 px high
LABEL_SIZE = 20
# Okabe-Ito colours, told apart with any colour vision: truth blue; proposals orange and vermillion in turn,
# so two boxes on one question (a split or doubled question) show as two colours
TRUTH = (0, 114, 178)
PROPOSED = ((230, 159, 0), (213, 94, 0))


def page_tile(page: Image.Image, height: int = TILE_HEIGHT) -> tuple[Image.Image, float]:
    """The page scaled to ``height`` pixels (boxes are drawn after, at the size they are seen), and the scale."""
    scale = height / page.height
    return page.resize((max(1, round(page.width * scale)), height)), scale


def draw_box(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], color: tuple[int, int, int],
             label: str = "", width: int = 3) -> None:
    """A box outline and, inside its top-left corner, a label in white on the box's colour."""
    draw.rectangle(box, outline=color, width=width)
    if label:
        font = ImageFont.load_default(size=LABEL_SIZE)
        x, y = box[0] + width, box[1] + width
        left, top, right, bottom = draw.textbbox((x, y), label, font=font)
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=color)
        draw.text((x, y), label, fill=(255, 255, 255), font=font)


def caption(draw: ImageDraw.ImageDraw, text: str, width: int | None = None) -> None:
    """Text at the top of a tile, black on white; wrapped onto more lines where the tile is narrower."""
    font = ImageFont.load_default(size=LABEL_SIZE)
    room = (width or draw.im.size[0]) - 16
    lines: list[str] = []
    for word in text.split(" "):
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= room:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    y = 8
    for line in lines:
        left, top, right, bottom = draw.textbbox((8, y), line, font=font)
        draw.rectangle((left - 4, top - 4, right + 4, bottom + 4), fill=(255, 255, 255))
        draw.text((8, y), line, fill=(0, 0, 0), font=font)
        y = int(bottom) + 6

"""Synthetic workbook pages in the labeling app's layout, for demos and tests.

Each workbook has its own paper (A4 or B5), scan resolution (100, 150 or 200 dpi), spacing
(some are tight), and labeler's habit (how far outside the ink the person draws). Its pages have
a running header, a page number and sometimes a footer and section titles (none of which are
questions), and one or two columns of numbered questions: text lines in Korean and English, and
sometimes a figure (below the text or beside it), a table, a row or two of answer choices, and
blank working space that the question owns. Some workbooks are scanned: grey paper, noise, a
slight rotation and blur.

The question boxes are written as the app writes them: ``documents/{id}/groups/{page}_groups.json``
with a pixel ``combinedBbox`` per group: the question's ink plus the labeler's margin (one person
labels a collection, so one habit, give or take a pixel), down to the end of its working space
(for the last question of a column, the column's end).
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from qblock.data.app_folder import AppFolder

INK = (25, 25, 25)
PAPER_MM = {"A4": (210, 297), "B5": (182, 257)}


def _packaged_fonts() -> list[str]:
    """NanumGothic from the koreanize-matplotlib package (a qblock dependency), found without importing it."""
    spec = importlib.util.find_spec("koreanize_matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    fonts = Path(next(iter(spec.submodule_search_locations))) / "fonts"
    return [str(fonts / "NanumGothic.ttf"), str(fonts / "NanumGothicBold.ttf")]


# Fonts with Hangul first, then plain Latin ones; the first that loads is used.
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "C:/Windows/Fonts/malgun.ttf",
    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
    "DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)

_DOCUMENT_NAMES = (
    "중학 수학 2-1",
    "algebra basics",
    "기하 연습",
    "workbook.v2",
    "확률과 통계",
    "calculus_drill",
    "수학 상 유형",
    "geometry 101",
)
_WORDS_KO = (
    "다음 식을 계산하시오 그림에서 삼각형의 넓이를 구하여라 값은 일차방정식의 해를 옳은 것은 "
    "보기에서 모두 고른 것은 두 점 사이의 거리 함수의 그래프가 지날 때 상수 a의 값을"
).split()
_WORDS_EN = "find the value of x if solve for area triangle circle point line given show that 2x+3=7 y=3x-1".split()
_HEADERS = ("단원 평가", "Unit review", "개념 확인 문제", "Practice set", "실력 향상")
_SECTIONS = ("Ⅰ. 문자와 식", "Ⅱ. 일차방정식", "A. Linear equations", "유형 03 도형의 넓이", "B. Word problems")
_CIRCLED = "①②③④⑤"


@dataclass(frozen=True)
class Box:
    """A question's bounding box in page pixels."""

    x: int
    y: int
    width: int
    height: int


TITLE_GREY = 222  # a section title's shading


@dataclass(frozen=True)
class Style:
    """What one workbook's pages share."""

    width: int
    height: int
    unit: float  # pixels per 1/100 inch: the dpi over 100
    pad: int  # the labeler's margin around the ink, pixels
    gap: int  # blank space between one question's box and the next one's ink
    scanned: bool

    def px(self, value: float) -> int:
        return max(1, round(value * self.unit))


def random_style(rng: random.Random, pad: float) -> Style:
    """A workbook's paper, resolution, spacing and scan; ``pad`` is the labeler's margin in 1/100 inch."""
    paper = rng.choice(("A4", "A4", "B5"))
    dpi = rng.choice((100, 150, 200))
    unit = dpi / 100
    width, height = (round(mm / 25.4 * dpi) for mm in PAPER_MM[paper])
    tight = rng.random() < 0.35
    return Style(width, height, unit, pad=round(pad * unit),
                 gap=round((rng.uniform(6, 12) if tight else rng.uniform(18, 36)) * unit),
                 scanned=rng.random() < 0.3)


@lru_cache(maxsize=64)
def load_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The first available font from the candidates (bold where there is one), else PIL's built-in one."""
    packaged = _packaged_fonts()
    candidates = ([packaged[1]] if bold and packaged else []) + packaged[:1] + list(_FONT_CANDIDATES)
    for candidate in candidates:
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def has_hangul_font() -> bool:
    """Whether the demo's text font draws Korean letters (else they come out as empty boxes)."""
    font = load_font(20)
    return isinstance(font, ImageFont.FreeTypeFont) and font.getmask("가").getbbox() is not None \
        and font.getmask("가").getbbox() != font.getmask("\uffff").getbbox()


def _sentence(rng: random.Random, words: int, draw: ImageDraw.ImageDraw, font, max_width: float) -> str:
    """Up to ``words`` random words that fit in ``max_width`` pixels."""
    vocabulary = _WORDS_KO if rng.random() < 0.6 else _WORDS_EN
    text = rng.choice(vocabulary)
    for _ in range(words - 1):
        longer = f"{text} {rng.choice(vocabulary)}"
        if draw.textlength(longer, font=font) > max_width:
            break
        text = longer
    return text


class Ink:
    """Draws on the page and remembers the extent of what it drew (the question's ink)."""

    def __init__(self, draw: ImageDraw.ImageDraw) -> None:
        self.draw = draw
        self.extent: list[float] | None = None

    def _grow(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if self.extent is None:
            self.extent = [x0, y0, x1, y1]
        else:
            e = self.extent
            self.extent = [min(e[0], x0), min(e[1], y0), max(e[2], x1), max(e[3], y1)]

    def text(self, xy: tuple[float, float], text: str, font) -> None:
        self.draw.text(xy, text, font=font, fill=INK)
        self._grow(*self.draw.textbbox(xy, text, font=font))

    def line(self, xy: tuple[float, float, float, float], width: int) -> None:
        self.draw.line(xy, fill=INK, width=width)
        half = width / 2
        self._grow(min(xy[0], xy[2]) - half, min(xy[1], xy[3]) - half, max(xy[0], xy[2]) + half,
                   max(xy[1], xy[3]) + half)

    def rectangle(self, xy: tuple[float, float, float, float], width: int) -> None:
        self.draw.rectangle(xy, outline=INK, width=width)
        self._grow(*xy)


def _draw_figure(ink: Ink, rng: random.Random, s: Style, x: int, y: int, w: int, h: int) -> None:
    ink.rectangle((x, y, x + w, y + h), width=s.px(1))
    kind = rng.choice(("triangle", "circle", "axes"))
    m = s.px(10)
    if kind == "triangle":
        ink.draw.polygon([(x + m, y + h - m), (x + w - m, y + h - m), (x + w // 3, y + m)], outline=INK, width=s.px(2))
    elif kind == "circle":
        r = min(w, h) // 2 - m
        ink.draw.ellipse((x + w // 2 - r, y + h // 2 - r, x + w // 2 + r, y + h // 2 + r), outline=INK,
                         width=s.px(2))
    else:
        ink.line((x + m, y + h // 2, x + w - m, y + h // 2), width=s.px(1))
        ink.line((x + w // 2, y + m, x + w // 2, y + h - m), width=s.px(1))
        ink.line((x + m + s.px(5), y + h - m - s.px(5), x + w - m - s.px(5), y + m + s.px(5)), width=s.px(2))


def _draw_table(ink: Ink, rng: random.Random, s: Style, x: int, y: int, max_width: int, font) -> int:
    """A small table of numbers; return its height."""
    rows, columns = rng.randint(2, 3), rng.randint(3, 5)
    cell_w = min(s.px(70), max_width // columns)
    cell_h = s.px(26)
    for r in range(rows + 1):
        ink.line((x, y + r * cell_h, x + columns * cell_w, y + r * cell_h), width=s.px(1))
    for c in range(columns + 1):
        ink.line((x + c * cell_w, y, x + c * cell_w, y + rows * cell_h), width=s.px(1))
    for r in range(rows):
        for c in range(columns):
            label = ("x", "y", "f(x)")[r] if c == 0 else str(rng.randint(-9, 30))
            ink.text((x + c * cell_w + s.px(8), y + r * cell_h + s.px(4)), label, font)
    return rows * cell_h


def _draw_question(draw: ImageDraw.ImageDraw, rng: random.Random, s: Style, number: int, x: int, y: int,
                   width: int) -> tuple[list[float], int]:
    """Draw one question with its top-left at (x, y); return its ink extent and its working space."""
    font = load_font(s.px(17))
    line_height = s.px(26)
    indent = s.px(32)
    ink = Ink(draw)
    ink.text((x, y), f"{number}." if rng.random() < 0.7 else f"{number:02d}", load_font(s.px(17), bold=True))
    figure_beside = width > s.px(500) and rng.random() < 0.2
    text_width = width - indent - (s.px(200) if figure_beside else 0)
    bottom = y
    for line in range(rng.randint(1, 4)):
        ink.text((x + indent, y + line * line_height), _sentence(rng, rng.randint(3, 9), draw, font, text_width), font)
        bottom = y + (line + 1) * line_height
    if figure_beside:
        _draw_figure(ink, rng, s, x + width - s.px(180), y, s.px(170), s.px(rng.randint(90, 140)))
        bottom = max(bottom, round(ink.extent[3]) if ink.extent else bottom)
    extra = rng.random()
    if extra < 0.3 and not figure_beside:
        fig_w, fig_h = rng.randint(width // 3, width // 2), s.px(rng.randint(80, 150))
        _draw_figure(ink, rng, s, x + indent, bottom + s.px(8), fig_w, fig_h)
        bottom += fig_h + s.px(16)
    elif extra < 0.45:
        bottom += _draw_table(ink, rng, s, x + indent, bottom + s.px(8), width - indent, font) + s.px(16)
    if rng.random() < 0.55:
        circled = rng.random() < 0.5
        labels = [(_CIRCLED[i] if circled else f"({i + 1})") + f" {rng.randint(-20, 99)}" for i in range(5)]
        one_row = "   ".join(labels)
        rows = [one_row] if draw.textlength(one_row, font=font) <= width - indent else \
            ["   ".join(labels[:3]), "   ".join(labels[3:])]
        for row in rows:
            ink.text((x + indent, bottom + s.px(6)), row, font)
            bottom += line_height + s.px(6)
    working_space = s.px(rng.randint(40, 140)) if rng.random() < 0.3 else 0
    assert ink.extent is not None
    return ink.extent, working_space


def _draw_section_title(draw: ImageDraw.ImageDraw, rng: random.Random, s: Style, x: int, y: int, width: int) -> int:
    """A shaded section title (not a question); return its height."""
    height = s.px(34)
    draw.rectangle((x, y, x + width, y + height), fill=(TITLE_GREY,) * 3)
    draw.text((x + s.px(10), y + s.px(6)), rng.choice(_SECTIONS), font=load_font(s.px(19), bold=True), fill=INK)
    return height


def _layout_column(draw: ImageDraw.ImageDraw, rng: random.Random, s: Style, x: int, top: int, bottom_limit: int,
                   width: int, number: int) -> list[list[float]]:
    """Questions down one column; return their boxes (x0, y0, x1, y1) before any scan effects."""
    boxes: list[list[float]] = []
    last_space = 0
    y = top
    while True:
        # Draw on a scratch page first, so that a question that does not fit leaves no marks, nor does a
        # section title it would have followed (a title left at a column's end would fall inside the
        # box of the column's last question, which then owns the space down to the column's end).
        title_state = None
        title_height = 0
        if rng.random() < 0.12:
            title_state = rng.getstate()
            title_height = _draw_section_title(ImageDraw.Draw(Image.new("RGB", (1, 1))), rng, s, x, y, width)
            if y + title_height + s.px(60) > bottom_limit:
                break
            title_height += s.px(14)
        state = rng.getstate()
        extent, working_space = _draw_question(ImageDraw.Draw(Image.new("RGB", (1, 1))), rng, s, number,
                                               x + s.pad, y + title_height + s.pad, width - 2 * s.pad)
        if extent[3] + s.pad > bottom_limit:
            break
        if title_state is not None:
            rng.setstate(title_state)
            _draw_section_title(draw, rng, s, x, y, width)
            y += title_height
        rng.setstate(state)
        extent, working_space = _draw_question(draw, rng, s, number, x + s.pad, y + s.pad, width - 2 * s.pad)
        jitter = [rng.uniform(-1, 1) * s.unit for _ in range(4)]  # a hand-drawn box is never exact
        box = [extent[0] - s.pad + jitter[0], extent[1] - s.pad + jitter[1], extent[2] + s.pad + jitter[2],
               min(bottom_limit, extent[3] + s.pad + working_space + jitter[3])]
        boxes.append(box)
        last_space = working_space
        number += 1
        y = round(box[3]) + s.gap + s.px(rng.uniform(0, 3))
    if boxes and last_space:  # the column's last question owns the blank space down to the column's end
        boxes[-1][3] = bottom_limit
    return boxes


def render_page(rng: random.Random, title: str, page_number: int, first_question: int,
                style: Style | None = None) -> tuple[Image.Image, list[Box]]:
    """Render one page; return it with its question boxes."""
    s = style or Style(827, 1169, 1.0, 6, 24, scanned=False)
    image = Image.new("RGB", (s.width, s.height), "white")
    draw = ImageDraw.Draw(image)
    margin = s.px(60)
    header_font, small_font = load_font(s.px(22), bold=True), load_font(s.px(15))
    draw.text((margin, s.px(28)), f"{title} · {rng.choice(_HEADERS)}", font=header_font, fill=INK)
    draw.line((margin, s.px(62), s.width - margin, s.px(62)), fill=INK, width=s.px(2))
    draw.text((s.width // 2 - s.px(10), s.height - s.px(40)), f"- {page_number} -", font=small_font, fill=INK)
    if rng.random() < 0.4:
        draw.text((s.width - margin - s.px(160), s.height - s.px(40)), "© qblock press", font=small_font, fill=INK)

    columns = rng.choice((1, 2, 2))
    gutter = s.px(40)
    column_width = (s.width - 2 * margin - (columns - 1) * gutter) // columns
    if columns == 2:
        draw.line((s.width // 2, s.px(80), s.width // 2, s.height - s.px(70)), fill=(150, 150, 150), width=s.px(1))
    bottom_limit = s.height - s.px(80)
    boxes: list[list[float]] = []
    for column in range(columns):
        x = margin + column * (column_width + gutter)
        found = _layout_column(draw, rng, s, x, s.px(84) + s.px(rng.randint(0, 20)), bottom_limit, column_width,
                               first_question + len(boxes))
        boxes.extend(found)
    if s.scanned:
        image, boxes = _scan(image, boxes, rng, s)
    return image, [Box(round(x0), round(y0), round(x1) - round(x0), round(y1) - round(y0))
                   for x0, y0, x1, y1 in boxes]


def _scan(image: Image.Image, boxes: list[list[float]], rng: random.Random, s: Style):
    """Grey paper, a slight rotation, blur and noise; the boxes follow the rotation (the labeler
    draws an upright box around the turned question)."""
    import numpy as np

    angle = rng.uniform(-0.8, 0.8)
    paper = rng.randint(205, 238)
    turned = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(255, 255, 255))
    turned = turned.filter(ImageFilter.GaussianBlur(0.5 * s.unit))
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 7, (s.height, s.width, 1))
    pixels = np.asarray(turned, dtype=np.float32) * (paper / 255) + noise
    scanned = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    cx, cy = s.width / 2, s.height / 2
    cos, sin = math.cos(math.radians(-angle)), math.sin(math.radians(-angle))
    turned_boxes = []
    for x0, y0, x1, y1 in boxes:
        corners = [(cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos)
                   for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        turned_boxes.append([max(0, min(xs)), max(0, min(ys)), min(s.width, max(xs)), min(s.height, max(ys))])
    return scanned, turned_boxes


def groups_document(page: str, boxes: list[Box], size: tuple[int, int] = (827, 1169)) -> dict:
    """The app's groups JSON for one page, extra fields included."""
    return {
        "page": page,
        "imageWidth": size[0],
        "imageHeight": size[1],
        "groups": [
            {
                "id": f"{page}-g{index}",
                "type": "question",
                "blockIds": [f"{page}-b{index}-{part}" for part in range(2)],
                "combinedBbox": {"x": b.x, "y": b.y, "width": b.width, "height": b.height},
            }
            for index, b in enumerate(boxes)
        ],
    }


def document_ids(count: int) -> list[str]:
    """Document ids for a demo collection; the first has Korean letters and a space."""
    return [
        _DOCUMENT_NAMES[i] if i < len(_DOCUMENT_NAMES) else f"{_DOCUMENT_NAMES[i % len(_DOCUMENT_NAMES)]} {i}"
        for i in range(count)
    ]


def write_demo_dataset(root: Path, documents: int = 20, pages: int = 4, seed: int = 0,
                       labeler_seed: int | None = None) -> int:
    """Write ``documents`` workbooks of ``pages`` pages under ``root``; return the page count.
    ``labeler_seed`` (default: ``seed``) picks the person who draws the boxes: another seed's pages
    labeled by the same person share its margin round a question."""
    if documents < 1 or pages < 1:
        raise ValueError("documents and pages must be at least 1")
    written = 0
    app = AppFolder(root)
    labeler = seed if labeler_seed is None else labeler_seed
    labeler_pad = random.Random(f"{labeler}/labeler").uniform(3, 8)  # one person labels the collection
    for doc_index, doc_id in enumerate(document_ids(documents)):
        rng = random.Random(f"{seed}/{doc_index}")
        style = random_style(rng, labeler_pad)
        for folder in (app.pages_folder(doc_id), app.groups_folder(doc_id), app.document(doc_id) / "blocks",
                       app.document(doc_id) / "problems"):  # the app's own folders, empty here
            folder.mkdir(parents=True, exist_ok=True)
        question = 1
        for page_number in range(1, pages + 1):
            page = f"page_{page_number:03d}"
            image, boxes = render_page(rng, doc_id, page_number, question, style)
            question += len(boxes)
            # lossless either way; level 6 took 12.8 s for the 48 demo pages, level 1 6.6 s
            image.save(app.new_page_image(doc_id, page), compress_level=1)
            groups = groups_document(page, boxes, image.size)
            app.groups_file(doc_id, page).write_text(
                json.dumps(groups, ensure_ascii=False, indent=1), encoding="utf-8"
            )
            written += 1
    return written

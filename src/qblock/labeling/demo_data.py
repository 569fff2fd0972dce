"""Synthetic workbook pages in the labeling app's layout, for demos and tests.

Each page is an A4-like image with a header and a page number (which belong to no question)
and one or two columns of numbered questions: text lines, sometimes a figure, sometimes a row
of answer choices, and blank working space. The question boxes are written as the app writes
them: ``documents/{id}/groups/{page}_groups.json`` with a pixel ``combinedBbox`` per group.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PAGE_WIDTH, PAGE_HEIGHT = 827, 1169  # A4 at 100 dpi
MARGIN = 60
INK = (25, 25, 25)

# Fonts with Hangul, then plain Latin ones; the first that loads is used.
_FONT_CANDIDATES = (
    "NanumGothic.ttf",
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
    "다음 식을 계산하시오 그림에서 삼각형 넓이 구하여라 값은 일차방정식 해를 옳은 것은".split()
)
_WORDS_EN = "find the value of x if solve for area triangle circle point line given show that".split()
_HEADERS = ("단원 평가", "Unit review", "개념 확인 문제", "Practice set", "실력 향상")


@dataclass(frozen=True)
class Box:
    """A question's bounding box in page pixels."""

    x: int
    y: int
    width: int
    height: int


@lru_cache(maxsize=16)
def load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The first available font from the candidates, else PIL's built-in one."""
    for candidate in _FONT_CANDIDATES:
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def _sentence(rng: random.Random, words: int, draw: ImageDraw.ImageDraw, font, max_width: float) -> str:
    """Up to ``words`` random words that fit in ``max_width`` pixels."""
    vocabulary = _WORDS_KO if rng.random() < 0.5 else _WORDS_EN
    text = rng.choice(vocabulary)
    for _ in range(words - 1):
        longer = f"{text} {rng.choice(vocabulary)}"
        if draw.textlength(longer, font=font) > max_width:
            break
        text = longer
    return text


def _draw_figure(draw: ImageDraw.ImageDraw, rng: random.Random, x: int, y: int, w: int, h: int) -> None:
    draw.rectangle((x, y, x + w, y + h), outline=INK, width=1)
    kind = rng.choice(("triangle", "circle", "axes"))
    if kind == "triangle":
        draw.polygon([(x + 10, y + h - 10), (x + w - 10, y + h - 10), (x + w // 3, y + 10)], outline=INK, width=2)
    elif kind == "circle":
        r = min(w, h) // 2 - 10
        draw.ellipse((x + w // 2 - r, y + h // 2 - r, x + w // 2 + r, y + h // 2 + r), outline=INK, width=2)
    else:
        draw.line((x + 10, y + h // 2, x + w - 10, y + h // 2), fill=INK, width=1)
        draw.line((x + w // 2, y + 10, x + w // 2, y + h - 10), fill=INK, width=1)
        draw.line((x + 15, y + h - 15, x + w - 15, y + 15), fill=INK, width=2)


def _draw_question(
    draw: ImageDraw.ImageDraw, rng: random.Random, number: int, x: int, y: int, width: int
) -> Box:
    """Draw one question with its top-left at (x, y); return its box."""
    font = load_font(17)
    line_height = 26
    draw.text((x, y), f"{number}.", font=font, fill=INK)
    bottom = y + line_height
    right = x + 30
    for line in range(rng.randint(1, 4)):
        text = _sentence(rng, rng.randint(3, 9), draw, font, width - 40)
        draw.text((x + 32, y + line * line_height), text, font=font, fill=INK)
        right = max(right, x + 32 + int(draw.textlength(text, font=font)))
        bottom = y + (line + 1) * line_height
    if rng.random() < 0.35:
        fig_w, fig_h = rng.randint(width // 3, width // 2), rng.randint(80, 150)
        _draw_figure(draw, rng, x + 32, bottom + 8, fig_w, fig_h)
        bottom += fig_h + 16
        right = max(right, x + 32 + fig_w)
    if rng.random() < 0.5:
        choices = "   ".join(f"({i}) {rng.randint(-20, 99)}" for i in range(1, 6))
        while draw.textlength(choices, font=font) > width - 40:
            choices = choices.rsplit("   ", 1)[0]
        draw.text((x + 32, bottom + 6), choices, font=font, fill=INK)
        right = max(right, x + 32 + int(draw.textlength(choices, font=font)))
        bottom += line_height + 6
    bottom += rng.randint(0, 60)  # working space the question owns
    pad = 6
    return Box(x - pad, y - pad, right - x + 2 * pad, bottom - y + 2 * pad)


def render_page(rng: random.Random, title: str, page_number: int, first_question: int) -> tuple[Image.Image, list[Box]]:
    """Render one page; return it with its question boxes."""
    image = Image.new("RGB", (PAGE_WIDTH, PAGE_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    header_font, small_font = load_font(22), load_font(15)
    draw.text((MARGIN, 28), f"{title} · {rng.choice(_HEADERS)}", font=header_font, fill=INK)
    draw.line((MARGIN, 62, PAGE_WIDTH - MARGIN, 62), fill=INK, width=2)
    draw.text((PAGE_WIDTH // 2 - 10, PAGE_HEIGHT - 40), f"- {page_number} -", font=small_font, fill=INK)

    columns = rng.choice((1, 2, 2))
    gutter = 40
    column_width = (PAGE_WIDTH - 2 * MARGIN - (columns - 1) * gutter) // columns
    if columns == 2:
        middle = PAGE_WIDTH // 2
        draw.line((middle, 80, middle, PAGE_HEIGHT - 70), fill=(150, 150, 150), width=1)

    boxes: list[Box] = []
    number = first_question
    for column in range(columns):
        x = MARGIN + column * (column_width + gutter)
        y = 90 + rng.randint(0, 20)
        while True:
            # Draw on a scratch page first so a question that does not fit leaves no marks.
            scratch_state = rng.getstate()
            scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
            box = _draw_question(scratch, rng, number, x + 6, y + 6, column_width - 12)
            if box.y + box.height > PAGE_HEIGHT - 80:
                break
            rng.setstate(scratch_state)
            boxes.append(_draw_question(draw, rng, number, x + 6, y + 6, column_width - 12))
            number += 1
            y = box.y + box.height + rng.randint(18, 40)
    return image, boxes


def _groups_document(page: str, boxes: list[Box]) -> dict:
    """The app's groups JSON for one page, extra fields included."""
    return {
        "page": page,
        "imageWidth": PAGE_WIDTH,
        "imageHeight": PAGE_HEIGHT,
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


def write_demo_dataset(root: Path, documents: int = 8, pages: int = 6, seed: int = 0) -> int:
    """Write ``documents`` workbooks of ``pages`` pages under ``root``; return the page count."""
    if documents < 1 or pages < 1:
        raise ValueError("documents and pages must be at least 1")
    written = 0
    for doc_index, doc_id in enumerate(document_ids(documents)):
        rng = random.Random(f"{seed}/{doc_index}")
        doc_dir = root / "documents" / doc_id
        for sub in ("pages", "groups", "blocks", "problems"):
            (doc_dir / sub).mkdir(parents=True, exist_ok=True)
        question = 1
        for page_number in range(1, pages + 1):
            page = f"page_{page_number:03d}"
            image, boxes = render_page(rng, doc_id, page_number, question)
            question += len(boxes)
            image.save(doc_dir / "pages" / f"{page}.png", optimize=False)
            groups = _groups_document(page, boxes)
            (doc_dir / "groups" / f"{page}_groups.json").write_text(
                json.dumps(groups, ensure_ascii=False, indent=1), encoding="utf-8"
            )
            written += 1
    return written

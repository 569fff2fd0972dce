"""The val pages the model gets most wrong, drawn with true and predicted boxes.

A page's error is its missed questions plus its false detections at the display threshold
(IoU 0.5, greedy matching by confidence); mAP says how good a model is, this picture says where
it fails (a two-column page, a figure taken for a question, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from qblock.data.contact_sheet import PROPOSED, TRUTH, caption, draw_box, page_tile, save_contact_sheet
from qblock.data.page_image import as_page
from qblock.quality.crops import Box, ValPage, match


def page_errors(truth: list[Box], predicted: list[Box], threshold: float = 0.5) -> tuple[int, int]:
    """(missed, false) for one page; ``predicted`` boxes are sorted by confidence, best first."""
    matched = match(truth, predicted, threshold)
    return len(truth) - matched, len(predicted) - matched


def draw_worst(export_dir: Path, pages: list[ValPage], out: Path, conf: float = 0.25, count: int = 4) -> list[dict]:
    """Draw the ``count`` worst val pages into ``out``; return every page's errors, worst first."""
    scored: list[tuple[dict[str, Any], ValPage]] = []
    for page in pages:
        missed, false = page_errors(page.truth, page.crops(conf))
        scored.append(({"image": page.image, "missed": missed, "false": false, "questions": len(page.truth)}, page))
    scored.sort(key=lambda item: (-(item[0]["missed"] + item[0]["false"]), item[0]["image"]))
    tiles = [_tile(export_dir / errors["image"], errors, page, conf) for errors, page in scored[:count]]
    save_contact_sheet(tiles, out)  # with no errors: the first pages
    return [errors for errors, _ in scored]


def _tile(image: Path, errors: dict, page: ValPage, conf: float) -> Image.Image:
    with Image.open(image) as source:
        canvas, scale = page_tile(as_page(source))
    draw = ImageDraw.Draw(canvas)

    def scaled(box: Box) -> Box:
        return box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale

    for box in page.truth:
        draw_box(draw, scaled(box), TRUTH, width=5)
    scores = [score for _, score in page.predicted if score >= conf]
    for number, (box, score) in enumerate(zip(page.crops(conf), scores, strict=True)):  # as propose crops them
        draw_box(draw, scaled(box), PROPOSED[number % 2], f"{score:.2f}", width=2)
    caption(draw, f"{image.name}: {errors['missed']} missed, {errors['false']} false (blue: true; orange: predicted)")
    return canvas

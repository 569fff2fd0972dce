"""The val pages the model gets most wrong, drawn with true and predicted boxes.

A page's error is its missed questions plus its false detections at the display threshold
(IoU 0.5, greedy matching by confidence); mAP says how good a model is, this picture says where
it fails (a two-column page, a figure taken for a question, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from qblock.data.contact_sheet import save_contact_sheet
from qblock.data.page_image import as_page
from qblock.quality.crops import Box, ValPage, match

TRUE, PREDICTED = (30, 160, 60), (220, 30, 30)


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


def _tile(image: Path, errors: dict, page: ValPage, conf: float, height: int = 520) -> Image.Image:
    with Image.open(image) as source:
        canvas = as_page(source)
    draw = ImageDraw.Draw(canvas)
    width = max(2, canvas.width // 250)
    for box in page.truth:
        draw.rectangle(box, outline=TRUE, width=width)
    scores = [score for _, score in page.predicted if score >= conf]
    for box, score in zip(page.crops(conf), scores, strict=True):  # the crops as propose makes them
        draw.rectangle(box, outline=PREDICTED, width=width)
        draw.text((box[0] + 4, box[1] + 2), f"{score:.2f}", fill=PREDICTED)
    draw.text((8, 8), f"{image.name}: {errors['missed']} missed, {errors['false']} false "
                      "(green: true, red: predicted)", fill=(0, 0, 0))
    scale = height / canvas.height
    return canvas.resize((max(1, int(canvas.width * scale)), height))

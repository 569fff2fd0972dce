"""The val pages the model gets most wrong, drawn with true and predicted boxes.

A page's error is its missed questions plus its false detections at the display threshold
(IoU 0.5, greedy matching by confidence); mAP says how good a model is, this picture says where
it fails (a two-column page, a figure taken for a question, ...).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from qblock.data.contact_sheet import save_contact_sheet
from qblock.data.labels import parse_clean

TRUE, PREDICTED = (30, 160, 60), (220, 30, 30)


def iou(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def page_errors(truth: list[tuple], predicted: list[tuple], threshold: float = 0.5) -> tuple[int, int]:
    """(missed, false) for one page; ``predicted`` boxes are sorted by confidence, best first."""
    unmatched = list(truth)
    false = 0
    for box in predicted:
        best = max(unmatched, key=lambda t: iou(t, box), default=None)
        if best is not None and iou(best, box) >= threshold:
            unmatched.remove(best)
        else:
            false += 1
    return len(unmatched), false


def draw_worst(export_dir: Path, val_images: list[str], predictions_file: Path, out: Path,
               conf: float = 0.25, count: int = 4) -> list[dict]:
    """Draw the ``count`` worst val pages into ``out``; return every page's errors, worst first."""
    predicted: dict[str, list[tuple]] = {}
    for p in json.loads(predictions_file.read_text(encoding="utf-8")) if predictions_file.is_file() else []:
        if p["score"] >= conf:
            x, y, w, h = p["bbox"]
            predicted.setdefault(p["file_name"], []).append((x, y, x + w, y + h, p["score"]))
    pages = []
    for entry in val_images:
        image = export_dir / entry
        with Image.open(image) as page:
            size = page.size
        rows = parse_clean((export_dir / "labels" / f"{image.stem}.txt").read_text(encoding="utf-8"))
        truth = [row.to_pixels(*size) for row in rows]
        boxes = sorted(predicted.get(image.name, []), key=lambda b: -b[4])
        missed, false = page_errors(truth, boxes)
        pages.append({"image": entry, "missed": missed, "false": false, "questions": len(truth),
                      "_truth": truth, "_boxes": boxes})
    pages.sort(key=lambda p: (-(p["missed"] + p["false"]), p["image"]))
    tiles = [_tile(export_dir / p["image"], p) for p in pages[:count]]  # with no errors: the first pages
    save_contact_sheet(tiles, out)
    return [{k: v for k, v in p.items() if not k.startswith("_")} for p in pages]


def _tile(image: Path, page: dict, height: int = 520) -> Image.Image:
    with Image.open(image) as source:
        canvas = source.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width = max(2, canvas.width // 250)
    for box in page["_truth"]:
        draw.rectangle(box, outline=TRUE, width=width)
    for *box, score in page["_boxes"]:
        draw.rectangle(box, outline=PREDICTED, width=width)
        draw.text((box[0] + 4, box[1] + 2), f"{score:.2f}", fill=PREDICTED)
    draw.text((8, 8), f"{image.name}: {page['missed']} missed, {page['false']} false (green: true, red: predicted)",
              fill=(0, 0, 0))
    scale = height / canvas.height
    return canvas.resize((max(1, int(canvas.width * scale)), height))

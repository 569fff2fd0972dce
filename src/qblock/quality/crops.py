"""The crop rate: the share of true questions that the model cuts out well enough to use as they
are, i.e. matched one-to-one by a prediction at IoU >= 0.9 (a crop that loses a line, or takes
half of the next question, falls below it). mAP says the model finds questions; this says a
person will not have to fix the crop.

Matching is greedy by confidence, as COCO's: each prediction, best first, takes the unmatched
true box it overlaps most, if that overlap reaches the IoU. The confidence threshold used for the
app's proposals is chosen here too: the one with the best F1 of good crops (precision: good crops
among all crops made; recall: the crop rate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from qblock.data.labels import parse_clean
from qblock.quality.crop_page import Found, crops_at, snap
from qblock.quality.ink_snap import SnapRule, ink_mask

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
CROP_IOU = 0.9


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match(truth: list[Box], predicted: list[Box], threshold: float) -> int:
    """How many true boxes are matched one-to-one at ``threshold``; ``predicted`` sorted best first."""
    unmatched = list(truth)
    matched = 0
    for box in predicted:
        best = max(unmatched, key=lambda t: iou(t, box), default=None)
        if best is not None and iou(best, box) >= threshold:
            unmatched.remove(best)
            matched += 1
    return matched


@dataclass
class ValPage:
    image: str  # the split list's entry, images/NAME
    size: tuple[int, int]
    truth: list[Box]
    predicted: list[tuple[Box, float]] = field(default_factory=list)  # (box, confidence), best first
    found: list[Found] | None = None  # the predictions snapped onto the ink (snap_pages), when they are
    rule: SnapRule | None = None  # the snapping rule, which also says how to settle working space

    def above(self, conf: float) -> list[Box]:
        return [box for box, score in self.predicted if score >= conf]

    def crops(self, conf: float) -> list[Box]:
        """The crops made at ``conf``, as propose makes them (quality/crop_page.py)."""
        if self.found is None:
            return self.above(conf)
        return [box for box, _ in crops_at(self.found, conf, self.rule, self.size)]


def snap_pages(export_dir: Path, pages: list[ValPage], rule: SnapRule, floor: float = 0.05) -> list[ValPage]:
    """The val pages with their predictions at or above ``floor`` confidence snapped by ``rule``
    (those below it can be no threshold's crops)."""
    snapped = []
    for page in pages:
        with Image.open(export_dir / page.image) as image:
            mask = ink_mask(image)
        snapped.append(replace(page, found=snap(mask, page.predicted, rule, floor), rule=rule))
    return snapped


def load_val_pages(export_dir: Path, val_images: list[str], predictions_file: Path) -> list[ValPage]:
    """The val pages with their true boxes and the predictions ultralytics kept (COCO JSON, pixels)."""
    predicted: dict[str, list[tuple[Box, float]]] = {}
    if predictions_file.is_file():
        for p in json.loads(predictions_file.read_text(encoding="utf-8")):
            x, y, w, h = p["bbox"]
            predicted.setdefault(p["file_name"], []).append(((x, y, x + w, y + h), float(p["score"])))
    pages = []
    for entry in val_images:
        image = export_dir / entry
        with Image.open(image) as page:
            size = page.size
        rows = parse_clean((export_dir / "labels" / f"{image.stem}.txt").read_text(encoding="utf-8"))
        boxes = sorted(predicted.get(image.name, []), key=lambda b: -b[1])
        pages.append(ValPage(entry, size, [row.to_pixels(*size) for row in rows], boxes))
    return pages


@dataclass
class CropScore:
    conf: float
    good: int  # true questions cropped at IoU >= 0.9
    questions: int
    crops: int  # predictions at or above conf

    @property
    def rate(self) -> float:
        return self.good / self.questions if self.questions else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.good / (self.questions + self.crops) if self.questions + self.crops else 0.0

    def f_score(self, beta: float) -> float:
        """The F-score of good crops with recall (the crop rate) weighted ``beta`` times precision."""
        weighted = beta * beta * self.questions + self.crops
        return (1 + beta * beta) * self.good / weighted if weighted else 0.0


def score_at(pages: list[ValPage], conf: float, threshold: float = CROP_IOU) -> CropScore:
    good = sum(match(p.truth, p.crops(conf), threshold) for p in pages)
    return CropScore(conf, good, sum(len(p.truth) for p in pages), sum(len(p.above(conf)) for p in pages))


# A question the model misses costs a person a box to draw; a false crop, one to delete. The threshold
# weighs the crop rate twice as much as precision (F2): with F1, a threshold chosen on a few val workbooks
# sat high (0.35-0.40) and new workbooks lost 0.07 of their crop rate to it (docs/benchmarks.md)
RECALL_WEIGHT = 2.0


def choose_threshold(pages: list[ValPage], floor: float = 0.05, step: float = 0.01,
                     beta: float = RECALL_WEIGHT) -> CropScore:
    """The confidence threshold with the best crop F-score (recall weighted ``beta`` times; the higher
    threshold on a tie), on a grid of ``step`` from ``floor``: a finer grid changes the crops of no real
    page, and a val set of thousands of predictions is scored in seconds."""
    candidates = [round(floor + i * step, 4) for i in range(int(round((1 - floor) / step)))]
    return max((score_at(pages, c) for c in candidates), key=lambda s: (round(s.f_score(beta), 12), s.conf))


def crop_metrics(pages: list[ValPage]) -> dict[str, float]:
    """crop_rate and false crops per page at the chosen threshold, and the threshold itself."""
    best = choose_threshold(pages)
    return {
        "crop_rate": round(best.rate, 5),
        "false_crops_per_page": round((best.crops - best.good) / len(pages), 4) if pages else 0.0,
        "conf_threshold": best.conf,
    }


def crop_metrics_at(pages: list[ValPage], conf: float) -> dict[str, float]:
    """crop_rate and false crops per page at a threshold chosen elsewhere (test pages, at val's)."""
    score = score_at(pages, conf)
    return {
        "crop_rate": round(score.rate, 5),
        "false_crops_per_page": round((score.crops - score.good) / len(pages), 4) if pages else 0.0,
    }


def crop_rate_by_document(pages: list[ValPage], conf: float, document_of: dict[str, str]) -> dict[str, float]:
    """Each document's crop rate at ``conf``, worst first; ``document_of`` maps a page's split-list entry to
    its document (a page it does not name is a document of its own)."""
    documents: dict[str, list[ValPage]] = {}
    for page in pages:
        documents.setdefault(document_of.get(page.image, page.image), []).append(page)
    rates = {name: crop_metrics_at(group, conf)["crop_rate"] for name, group in documents.items()}
    return dict(sorted(rates.items(), key=lambda item: (item[1], item[0])))


def found_at(pages: list[ValPage], conf: float, threshold: float = 0.5) -> dict[str, float]:
    """Precision and recall of the crops made at ``conf`` (the threshold propose uses), a question found when a
    crop overlaps it at IoU >= ``threshold`` (0.5, as mAP50 counts): what a person sees, not ultralytics'
    figures at a threshold of its own."""
    score = score_at(pages, conf, threshold)
    return {"precision": round(score.good / score.crops, 5) if score.crops else 0.0,
            "recall": round(score.rate, 5)}

"""What happened to each question at the threshold propose uses, counted and drawn.

ultralytics draws its confusion matrix at conf 0.001 (every box the model found at all: hundreds
of false positives a person never sees). This is the same matrix at the threshold evaluate chose
and `qblock propose` crops at, with the question found split by whether its crop is good
(IoU >= 0.9) or loose (0.5-0.9): the picture says what a person will do with the proposals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from qblock.quality.crops import CROP_IOU, ValPage, match

FOUND_IOU = 0.5  # a question found, as mAP50 counts it


@dataclass(frozen=True)
class Outcomes:
    conf: float
    questions: int
    good: int  # cropped at IoU >= 0.9: ready to use
    loose: int  # found at IoU 0.5-0.9: a box to adjust
    false_crops: int  # crops on no question: a box to delete
    pages: int

    @property
    def missed(self) -> int:  # no crop at IoU >= 0.5: a box to draw
        return self.questions - self.good - self.loose


def count(pages: list[ValPage], conf: float) -> Outcomes:
    cut = [(p.truth, p.crops(conf)) for p in pages]  # made once a page: snapping them is the costly part
    good = sum(match(truth, crops, CROP_IOU) for truth, crops in cut)
    found = sum(match(truth, crops, FOUND_IOU) for truth, crops in cut)
    crops = sum(len(crops) for _, crops in cut)
    return Outcomes(conf, sum(len(p.truth) for p in pages), good, max(found - good, 0), max(crops - found, 0),
                    len(pages))


def draw(outcomes: Outcomes, out: Path, split: str = "val") -> Path:
    """A 2x2 matrix (the model's crop or none, against a question or none) with counts and shares."""
    font, small = ImageFont.load_default(size=26), ImageFont.load_default(size=20)
    cell, left, top = 300, 260, 150
    image = Image.new("RGB", (left + 2 * cell + 40, top + 2 * cell + 110), "white")
    pen = ImageDraw.Draw(image)
    questions = max(outcomes.questions, 1)
    pen.text((20, 20), f"{split} pages ({outcomes.pages}) at conf {outcomes.conf:.2f}, the threshold propose uses",
             fill="black", font=font)
    pen.text((20, 60), "rows: what the model crops; columns: what the page holds", fill=(90, 90, 90), font=small)
    pen.text((left + cell // 2 - 60, top - 40), "a question", fill="black", font=font)
    pen.text((left + cell + cell // 2 - 70, top - 40), "no question", fill="black", font=font)
    pen.text((20, top + cell // 2 - 15), "a crop", fill="black", font=font)
    pen.text((20, top + cell + cell // 2 - 15), "no crop", fill="black", font=font)
    cells = (
        (0, 0, (0, 158, 115), [f"{outcomes.good} good (IoU >= 0.9)", f"{outcomes.good / questions:.0%} of questions",
                               f"{outcomes.loose} loose (IoU 0.5-0.9)"]),
        (1, 0, (213, 94, 0), [f"{outcomes.false_crops} false crops",
                              f"{outcomes.false_crops / max(outcomes.pages, 1):.1f} a page"]),
        (0, 1, (230, 159, 0), [f"{outcomes.missed} missed", f"{outcomes.missed / questions:.0%} of questions"]),
        (1, 1, (240, 240, 240), ["-"]),
    )
    for column, row, colour, lines in cells:
        x0, y0 = left + column * cell, top + row * cell
        pen.rectangle((x0, y0, x0 + cell - 4, y0 + cell - 4), fill=colour)
        for number, line in enumerate(lines):
            pen.text((x0 + 16, y0 + 20 + number * 40), line, fill="black", font=font if number == 0 else small)
    pen.text((20, top + 2 * cell + 30), f"{outcomes.questions} questions; good: use the crop, loose: adjust it, "
             "missed: draw it, false: delete it", fill=(90, 90, 90), font=small)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out

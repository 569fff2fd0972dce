"""The crop recipe, once: what evaluate measures on val is what propose cuts from a new page.

1. The model's boxes (pixels, with their confidences) have each edge snapped onto the page's ink by
   the rule learned from the training boxes (`quality/ink_snap.py`); each box also learns whether
   its bottom hugs its ink and how far down blank paper lets it move.
2. The boxes at or above a confidence threshold are the crops; among them, the working-space
   bottoms are settled (`quality/spacing.py`): which boxes are neighbours depends on which are kept.

Evaluate snaps a val page once and takes its crops at every threshold it tries (`snap`, then
`crops_at`); propose crops a page at the chosen threshold (`crop_page`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from qblock.quality.ink_snap import SnapRule, bottom_on_ink, ink_mask, room_below, snap_box
from qblock.quality.spacing import settle_bottoms

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class Found:
    """One box of the model's, after snapping."""

    box: Box
    score: float
    hugs: bool = True  # its bottom hugs its ink (else it owns the blank working space below)
    room: float | None = None  # how far down its bottom may move: the ink under it (None: the page's end)
    ink_end: float | None = None  # where its bottom would hug its ink (None: no ink in it, or no bottom margin learned)


def snap(mask: np.ndarray | None, found: list[tuple[Box, float]], rule: SnapRule | None,
         floor: float = 0.0) -> list[Found]:
    """The boxes with their edges on the ink (those under ``floor`` confidence, which no threshold
    keeps, as they are); as they are without a rule or an ink mask."""
    if mask is None or rule is None or not rule.active:
        return [Found(box, score) for box, score in found]
    snapped = []
    for box, score in found:
        if score < floor:
            snapped.append(Found(box, score))
            continue
        box = snap_box(mask, box, rule)
        hugs, ink_end = bottom_on_ink(mask, box, rule)
        snapped.append(Found(box, score, hugs, room_below(mask, box, rule), ink_end))
    return snapped


def crops_at(found: list[Found], conf: float, rule: SnapRule | None, size: tuple[int, int]) -> list[tuple[Box, float]]:
    """The crops at ``conf`` (box, confidence), in ``found``'s order: working-space bottoms settled
    among them when the rule says so. ``size`` is the page's (width, height)."""
    kept = [f for f in found if f.score >= conf]
    boxes = [f.box for f in kept]
    if rule is not None and rule.settles:
        width, height = size
        boxes = settle_bottoms(boxes, [f.hugs for f in kept], height, rule.reach * width, rule.spacing,
                               rule.column_end, [float(height) if f.room is None else f.room for f in kept],
                               [f.ink_end for f in kept])
    return list(zip(boxes, [f.score for f in kept], strict=True))


def crop_page(page: Image.Image, found: list[tuple[Box, float]], conf: float,
              rule: SnapRule | None) -> tuple[list[Found], list[tuple[Box, float]]]:
    """Every box snapped, and the crops at ``conf``: the recipe on one page as the model saw it."""
    mask = ink_mask(page) if rule is not None and rule.active and found else None
    snapped = snap(mask, found, rule)
    return snapped, crops_at(snapped, conf, rule, page.size)

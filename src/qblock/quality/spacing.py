"""Working space: where a question's box owns the blank space below its ink, its bottom edge has
no ink to snap to; the layout says where it ends instead.

On a workbook page the space between one question's box and the next one's is the same down the
page. Measured on the page itself, from the boxes whose bottom hugs their ink (the smaller gaps to
the box below), a box that owns working space gets its bottom at the next box's top minus that gap.
Whether a labeler's boxes follow this is learned from the training pages (``learn_spacing``); the
crops at a given threshold are settled together (``settle_bottoms``), since which boxes are
neighbours depends on which boxes are kept.

A working-space box with no box below it is a column's last question: it owns the space down to
the column's end, the page's bottom margin. Where the training pages' such boxes agree on where
that is (a share of the page height, ``learn_column_end``), their bottoms go there, or back onto
the question's ink, whichever is nearer the model's bottom: whether a column's last question owns
the blank paper under it is the labeler's call, not the page's (the demo's labeler gives it to 3 in
10), so the model's bottom is the only word on it, and the model hedges between the two.
"""

from __future__ import annotations

from statistics import median

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
AGREEMENT = 0.6  # share of working-space boxes that must end one page gap above the next box
MIN_BOXES = 5  # working-space boxes with a box below, to learn from at all
LARGEST_MOVE = 0.1  # of the page height: a bottom that would move further is left alone
COLUMN_END_SPREAD = 0.015  # of the page height: how closely column-end bottoms must agree (paper sizes differ)


def box_below(boxes: list[Box], index: int, slack: float) -> int | None:
    """The nearest box under ``boxes[index]`` in the same column (overlapping by half the narrower width)."""
    x0, _, x1, y1 = boxes[index]
    best = None
    for other, (u0, v0, u1, _) in enumerate(boxes):
        if other == index or v0 < y1 - slack:
            continue
        if min(x1, u1) - max(x0, u0) > 0.5 * min(x1 - x0, u1 - u0) and (best is None or v0 < boxes[best][1]):
            best = other
    return best


def page_gap(boxes: list[Box], hugs: list[bool], slack: float) -> float | None:
    """The gap between a box whose bottom hugs its ink and the box below it, on one page: the lower
    quartile of such gaps, not their median. What goes wrong only widens a gap: a section title
    between two questions, or a box that owns working space which the model cut short at its ink
    (on the demo's new workbooks the median came out 3-6 times the page's gap and moved good
    bottoms up; the lower quartile cropped as many questions or more on all 8 bench models)."""
    gaps = []
    for index, box in enumerate(boxes):
        below = box_below(boxes, index, slack) if hugs[index] else None
        if below is not None:
            gaps.append(boxes[below][1] - box[3])
    return sorted(gaps)[(len(gaps) - 1) // 4] if gaps else None


def settle_bottoms(boxes: list[Box], hugs: list[bool], height: int, slack: float, spacing: bool = True,
                   column_end: float | None = None, rooms: list[float] | None = None,
                   ink_ends: list[float | None] | None = None) -> list[Box]:
    """``boxes`` with each working-space bottom (one not hugging its ink) at the box below's top minus
    the page's gap (with ``spacing``), or, with no box below, at ``column_end`` (a share of the page
    height) or at its ``ink_ends`` entry (where that bottom would hug its ink), whichever is nearer;
    unchanged where the page gives no gap or no column end is known. A bottom moves down
    across blank paper only: never past its ``rooms`` entry (the ink under it, such as a section
    title between two questions)."""
    gap = page_gap(boxes, hugs, slack) if spacing else None
    settled = list(boxes)
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        if hugs[index]:
            continue
        below = box_below(boxes, index, slack)
        if below is None and column_end is not None:
            bottom = column_end * height
            ink_end = None if ink_ends is None else ink_ends[index]
            if ink_end is not None and abs(ink_end - y1) < abs(bottom - y1):
                bottom = ink_end
        elif below is not None and gap is not None:
            bottom = boxes[below][1] - gap
            if abs(bottom - y1) > LARGEST_MOVE * height:
                continue
        else:
            continue
        if rooms is not None and bottom > y1:
            bottom = max(y1, min(bottom, rooms[index]))
        if bottom > y0:
            settled[index] = (x0, y0, x1, bottom)
    return settled


def learn_spacing(pages: list[tuple[list[Box], list[bool], int, float]]) -> bool:
    """Whether the labeler's working-space boxes end one page gap above the next box: (true boxes,
    whether each bottom hugs its ink, page height, tolerance in pixels) per training page."""
    agree = total = 0
    for boxes, hugs, _, slack in pages:
        gap = page_gap(boxes, hugs, slack)
        if gap is None:
            continue
        for index, box in enumerate(boxes):
            below = None if hugs[index] else box_below(boxes, index, slack)
            if below is not None:
                total += 1
                agree += abs(boxes[below][1] - gap - box[3]) <= slack
    return total >= MIN_BOXES and agree >= AGREEMENT * total


def learn_column_end(pages: list[tuple[list[Box], list[bool], int, float]]) -> float | None:
    """Where a column's last working-space box ends, as a share of the page height, when the labeler's
    such boxes agree on it (``AGREEMENT`` of them within ``COLUMN_END_SPREAD``); else None."""
    ends = [box[3] / height for boxes, hugs, height, slack in pages
            for index, box in enumerate(boxes) if not hugs[index] and box_below(boxes, index, slack) is None]
    if len(ends) < MIN_BOXES:
        return None
    typical = median(ends)
    agree = sum(abs(end - typical) <= COLUMN_END_SPREAD for end in ends)
    return round(float(typical), 5) if agree >= AGREEMENT * len(ends) else None

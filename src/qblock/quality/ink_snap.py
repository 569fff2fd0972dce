"""Ink snapping: move each edge of a predicted box onto the ink it should hug.

Questions are dark text on light paper, and a person draws a box a steady margin outside the ink
(a habit, learned here from the training pages' boxes). The model's edges are a few pixels off;
the ink says where they belong. For each edge, the ink is looked for within ``reach`` of where the
ink should be (the edge moved inward by the learned margin):

- ink found, and the window's outer border is blank: the edge goes to that ink plus the margin;
- ink running through the outer border (the box cuts through a line of text, a figure, a table):
  a crop that cuts off ink must be fixed by hand, so the edge moves out past that ink, to the first
  blank gap wider than two reaches (wider than a word space or the gap between two lines, narrower
  than a column gutter or the space between questions), plus the margin; when the ink runs on
  further than ``GROW`` of the page width, the edge stays, because where that ink ends is not known;
- no ink in the window (blank working space a question owns): the edge stays.

Where the training boxes hug the ink on an edge almost always (TIGHT of them lie within reach of
the typical margin), a box too wide on
that edge has only blank paper between the model's edge and the ink: there the edge may move
inward across blank paper up to ``SHRINK`` of the page width (moving outward stays within reach).

An edge is snapped only when the training boxes agree on its margin (at least half lie within a
quarter of the reach of the typical margin, the median of the tightest ones) and when snapping it leaves
those boxes where they are (``MOVES``: a rule is checked on the pages it was learned from); evaluate keeps the
snapping only when it raises the val crop rate. A labeler whose boxes sit on the ink with other ink
closer than the reach (typeset text, questions packed tight) fails that check at the full reach; a
smaller reach is tried then (``REACH_SHARES``): a person that precise needs no wider search. Margins
and reach are shares of the page width, so one rule serves 100 and 200 dpi pages alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from PIL import Image

from qblock.data.page_image import as_page
from qblock.quality.spacing import learn_column_end, learn_spacing

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
EDGES = ("left", "top", "right", "bottom")
REACH = 0.012  # how far an edge may move: a share of the page width (10 px on an A4 page at 100 dpi)
AGREEMENT = 0.5  # share of training boxes whose margin must be near the typical one to snap that edge
TIGHT = 0.9  # share of boxes within reach of the ink that lets an edge move inward across blank paper
# Of the page width: how far such an edge may come in. Half the page: in effect to the box's own ink,
# however far (a model's box run to the column's edge past a short line); 0.08 until the measurement
# in docs/benchmarks.md ("Tight edges in to their ink").
SHRINK = 0.5
GROW = 0.16  # of the page width: how far an edge cutting through ink may move out, to where that ink ends
GAP = 2  # reaches of blank paper that end the ink an edge cuts through (more than a word space or a line gap)
MIN_INK = 2  # ink pixels a row or column needs to count (single specks of scan noise do not)
# A rule must leave the boxes it was learned from where they are. An edge that moves more than this share of
# the training boxes by over half a reach is not snapped: the ink near those edges is not what the boxes
# follow (a frame around each question, text packed closer than a reach). Measured on the learning curve's
# pages: rules learned from 8 or 64 demo pages move at most 4-6% of their own boxes' edges (and keep every
# val and test box); from 8-64 typeset pages, whose boxes hug the ink closer than a reach, 11-44% (and
# turn 40-58% of the new workbooks' true boxes into crops below IoU 0.9).
MOVES = 0.08
# Where the check drops edges at the full reach, a half and a quarter of it are tried, and the reach that
# snaps the most edges is kept (the first of equals). Typeset boxes sit on the ink, a pixel at most
# either way, with the next question's ink closer than a reach: at a quarter of it, all four edges of
# the typeset learning curve's rule pass the check (at the full reach none did) and its crops rise on val,
# the test split and new workbooks (docs/pretraining.md). The demo's boxes pass at the full reach.
REACH_SHARES = (1.0, 0.5, 0.25)
CHECK_PAGES = 60  # training pages the rule is checked on (their ink masks are kept packed meanwhile)


def ink_mask(page: Image.Image) -> np.ndarray:
    """True where the page has ink: darker than half the paper's typical grey (white or scanned grey)."""
    grey = np.asarray(as_page(page).convert("L"))  # transparent and 16-bit pages as on paper
    return grey < 0.5 * float(np.median(grey))


def _lines(mask: np.ndarray, box: Box, axis: int) -> np.ndarray:
    """Per row (axis 1) or column (axis 0) of the page: whether the box's span has ink there."""
    height, width = mask.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    # rows: ink counted over the box's columns; columns: over its rows
    strip = mask[:, max(0, x0):min(width, x1)] if axis == 1 else mask[max(0, y0):min(height, y1), :]
    if strip.size == 0:
        return np.zeros(mask.shape[0 if axis == 1 else 1], dtype=bool)
    return strip.sum(axis=axis) >= MIN_INK


def ink_extent(mask: np.ndarray, box: Box) -> Box | None:
    """The ink inside ``box``: (x0, y0, x1, y1) of its first and past-last ink column and row."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
    rows = np.flatnonzero(inside.sum(axis=1) >= MIN_INK)
    columns = np.flatnonzero(inside.sum(axis=0) >= MIN_INK)
    if rows.size == 0 or columns.size == 0:
        return None
    return (max(0, x0) + columns[0], max(0, y0) + rows[0], max(0, x0) + columns[-1] + 1, max(0, y0) + rows[-1] + 1)


@dataclass
class SnapRule:
    """The learned margins (share of page width; None: that edge is not snapped) and the reach."""

    margins: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(EDGES))
    reach: float = REACH
    boxes: int = 0  # training boxes it was learned from
    shrink: dict[str, float] = field(default_factory=dict)  # per edge, how far inward across blank paper
    bottom_hug: float | None = None  # the typical bottom margin of boxes that hug their ink
    spacing: bool = False  # working-space bottoms follow the page's gap between boxes (quality/spacing.py)
    column_end: float | None = None  # share of the page height where a column's last working space ends

    @property
    def active(self) -> bool:
        return any(m is not None for m in self.margins.values()) or self.settles

    @property
    def settles(self) -> bool:
        """Whether working-space bottoms are settled among the crops (quality/spacing.py)."""
        return self.spacing or self.column_end is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> SnapRule | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            hug = data.get("bottom_hug")
            return cls({e: data["margins"][e] for e in EDGES}, float(data["reach"]), int(data.get("boxes", 0)),
                       {e: float(v) for e, v in data.get("shrink", {}).items() if e in EDGES},
                       None if hug is None else float(hug), bool(data.get("spacing", False)),
                       None if data.get("column_end") is None else float(data["column_end"]))
        except (ValueError, KeyError, TypeError):
            return None


def learn(pages: Iterable[tuple[np.ndarray, list[Box]]], reach: float = REACH) -> SnapRule:
    """The margin people keep around the ink, per edge, from labeled pages (ink mask, true boxes),
    and whether their working-space boxes follow the page's spacing (quality/spacing.py). The reach
    is ``reach``, or a share of it (``REACH_SHARES``) where that snaps more edges (see the module notes)."""
    margins: dict[str, list[float]] = {e: [] for e in EDGES}
    seen: list[tuple[int, int, list[Box], list[Box | None]]] = []  # width, height, boxes, their ink
    kept: list[tuple[np.ndarray, tuple[int, int], list[Box]]] = []  # packed masks to check the rule on
    for mask, boxes in pages:
        height, width = mask.shape
        extents = [ink_extent(mask, box) for box in boxes]
        seen.append((width, height, boxes, extents))
        if len(kept) < CHECK_PAGES and boxes:
            kept.append((np.packbits(mask, axis=None), mask.shape, boxes))
        for box, ink in zip(boxes, extents, strict=True):
            if ink is None:
                continue
            for edge, outside in zip(EDGES, (ink[0] - box[0], ink[1] - box[1], box[2] - ink[2], box[3] - ink[3]),
                                     strict=True):
                margins[edge].append(outside / width)
    best = _rule_at(reach * REACH_SHARES[0], margins, seen, kept)
    for share in REACH_SHARES[1:]:
        if _snapped(best) == len(EDGES):
            break
        rule = _rule_at(reach * share, margins, seen, kept)
        if _snapped(rule) > _snapped(best):
            best = rule
    return best


def _snapped(rule: SnapRule) -> int:
    return sum(m is not None for m in rule.margins.values())


def _rule_at(reach: float, margins: dict[str, list[float]], seen: list[tuple[int, int, list[Box], list[Box | None]]],
             kept: list[tuple[np.ndarray, tuple[int, int], list[Box]]]) -> SnapRule:
    """The rule with this reach: each edge's typical margin where the boxes agree on it, checked on its own
    boxes, and the working-space habits."""
    rule = SnapRule(reach=reach, boxes=len(margins["left"]))
    for edge, values in margins.items():
        if not values:
            continue
        # The tight cluster: boxes whose edge hugs the ink (a question's blank working space is not in it).
        floor = sorted(values)[len(values) // 10]
        typical = median(v for v in values if v <= floor + reach / 2)
        agree = sum(abs(v - typical) <= reach / 4 for v in values) / len(values)
        rule.margins[edge] = round(float(typical), 6) if agree >= AGREEMENT else None
        if sum(v <= typical + reach for v in values) / len(values) >= TIGHT:
            rule.shrink[edge] = SHRINK
        if edge == "bottom":
            rule.bottom_hug = round(float(typical), 6)
    _drop_edges_that_move_their_own_boxes(rule, kept)
    layouts = [(boxes, [_hugs(box, ink, rule, width) for box, ink in zip(boxes, extents, strict=True)], height,
                rule.reach * width) for width, height, boxes, extents in seen]
    if rule.bottom_hug is not None:
        rule.spacing = learn_spacing(layouts)
        rule.column_end = learn_column_end(layouts)
    return rule


def _drop_edges_that_move_their_own_boxes(rule: SnapRule,
                                          pages: list[tuple[np.ndarray, tuple[int, int], list[Box]]]) -> None:
    """Each snapped edge tried alone on the training boxes: one that moves more than ``MOVES`` of them by
    over half a reach is not snapped (see MOVES)."""
    moved = dict.fromkeys(EDGES, 0)
    alone = {edge: SnapRule({e: rule.margins[e] if e == edge else None for e in EDGES}, rule.reach,
                            shrink={e: v for e, v in rule.shrink.items() if e == edge})
             for edge in EDGES if rule.margins[edge] is not None}
    total = 0
    for packed, shape, boxes in pages:
        mask = np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)
        limit = rule.reach * shape[1] / 2
        for box in boxes:
            total += 1
            for edge, edge_rule in alone.items():
                index = EDGES.index(edge)
                moved[edge] += abs(snap_box(mask, box, edge_rule)[index] - box[index]) > limit
    for edge in EDGES:
        if total and moved[edge] / total > MOVES:
            rule.margins[edge] = None
            rule.shrink.pop(edge, None)


def _hugs(box: Box, ink: Box | None, rule: SnapRule, width: int) -> bool:
    """Whether a box's bottom edge hugs its ink (else the box owns blank working space below it)."""
    if ink is None or rule.bottom_hug is None:
        return True
    return box[3] - ink[3] <= (rule.bottom_hug + rule.reach) * width


def hugs_ink(mask: np.ndarray, box: Box, rule: SnapRule) -> bool:
    return bottom_on_ink(mask, box, rule)[0]


def bottom_on_ink(mask: np.ndarray, box: Box, rule: SnapRule) -> tuple[bool, float | None]:
    """Whether ``box``'s bottom hugs its ink, and where it would if it did: the ink's last row plus the
    typical bottom margin of boxes that hug theirs (None with no ink in the box or no such margin learned)."""
    ink = ink_extent(mask, box)
    end = None if ink is None or rule.bottom_hug is None else float(ink[3]) + rule.bottom_hug * mask.shape[1]
    return _hugs(box, ink, rule, mask.shape[1]), end


def _first_ink(lines: np.ndarray, start: int, stop: int, step: int) -> int | None:
    """Scanning from ``start`` (the window's outer border) towards ``stop``: the first ink line, or
    None when the border itself has ink or the window has none."""
    positions = range(start, stop, step)
    if not positions or not 0 <= start < len(lines) or lines[start]:
        return None
    for position in positions:
        if lines[position]:
            return position
    return None


def _past_the_ink(lines: np.ndarray, start: int, step: int, blank: int, limit: int) -> int | None:
    """Scanning from ``start`` (ink) outward by ``step``: the first line of the first run of ``blank``
    blank lines, within ``limit`` lines; None when the ink runs on (or the page ends) before one."""
    run = 0
    for position in range(start, start + step * limit, step):
        if not 0 <= position < len(lines):
            return None
        run = 0 if lines[position] else run + 1
        if run >= blank:
            return position - step * (blank - 1)
    return None


def _ink_edge(lines: np.ndarray, border: int, stop: int, outward: int, reach: int, grow: int) -> int | None:
    """The ink line an edge belongs on, or None (the edge stays). ``border`` is the search window's
    outer end, ``stop`` its inner one, ``outward`` the direction away from the box.

    When the border is clear, the first ink scanning in from it. When ink runs through the border,
    or the border falls in the gap between two letters (ink just inside it, and more within a reach
    beyond), the edge cuts that ink: the last ink line out past it, before a gap of ``GAP`` reaches,
    within ``grow``.
    """
    found = _first_ink(lines, border, stop, -outward)
    beyond = [border + outward * i for i in range(1, reach + 1)]
    in_a_gap = found is not None and abs(found - border) < reach / 2 and \
        any(0 <= line < len(lines) and lines[line] for line in beyond)
    if (0 <= border < len(lines) and lines[border]) or in_a_gap:
        past = _past_the_ink(lines, border, outward, GAP * reach, grow)
        return None if past is None else past - outward
    return found


def snap_box(mask: np.ndarray, box: Box, rule: SnapRule) -> Box:
    """``box`` with each learned edge moved onto its ink, where the ink is clear (see the module notes)."""
    height, width = mask.shape
    reach = max(1, round(rule.reach * width))
    x0, y0, x1, y1 = box
    m = {e: (None if v is None else v * width) for e, v in rule.margins.items()}
    inward = {e: max(reach, round(rule.shrink.get(e, 0.0) * width)) for e in EDGES}
    out = list(box)
    rows = _lines(mask, box, axis=1) if m["top"] is not None or m["bottom"] is not None else None
    columns = _lines(mask, box, axis=0) if m["left"] is not None or m["right"] is not None else None
    grow = round(GROW * width)
    if m["left"] is not None and columns is not None:
        expected = int(round(x0 + m["left"]))
        found = _ink_edge(columns, max(0, expected - reach), min(width, expected + inward["left"] + 1), -1, reach, grow)
        out[0] = x0 if found is None else found - m["left"]
    if m["top"] is not None and rows is not None:
        expected = int(round(y0 + m["top"]))
        found = _ink_edge(rows, max(0, expected - reach), min(height, expected + inward["top"] + 1), -1, reach, grow)
        out[1] = y0 if found is None else found - m["top"]
    if m["right"] is not None and columns is not None:
        expected = int(round(x1 - m["right"])) - 1  # the last ink column
        found = _ink_edge(columns, min(width - 1, expected + reach), max(-1, expected - inward["right"] - 1), 1, reach,
                          grow)
        out[2] = x1 if found is None else found + 1 + m["right"]
    if m["bottom"] is not None and rows is not None:
        expected = int(round(y1 - m["bottom"])) - 1
        found = _ink_edge(rows, min(height - 1, expected + reach), max(-1, expected - inward["bottom"] - 1), 1, reach,
                          grow)
        out[3] = y1 if found is None else found + 1 + m["bottom"]
    out = [max(0.0, out[0]), max(0.0, out[1]), min(float(width), out[2]), min(float(height), out[3])]
    if out[2] <= out[0] or out[3] <= out[1]:
        return box
    return (out[0], out[1], out[2], out[3])


def room_below(mask: np.ndarray, box: Box, rule: SnapRule) -> float:
    """How far down ``box``'s bottom may move across blank paper: to the first ink under it (in its
    columns), less the margin people keep above ink; the page's height when there is none."""
    height, width = mask.shape
    rows = _lines(mask, box, axis=1)
    start = min(height, max(0, int(np.ceil(box[3]))))
    while start < height and rows[start]:  # a bottom cutting through a line of its own: past that line
        start += 1
    below = np.flatnonzero(rows[start:])
    if below.size == 0:
        return float(height)
    return start + float(below[0]) - (rule.bottom_hug or 0.0) * width


def learn_from_folder(export_dir: Path, images: list[str], reach: float = REACH, limit: int = 300) -> SnapRule:
    """The rule learned from up to ``limit`` pages of an exported YOLO folder (split list entries)."""
    from qblock.data.labels import parse_clean

    def pages() -> Iterable[tuple[np.ndarray, list[Box]]]:
        step = max(1, len(images) // limit)
        for entry in images[::step][:limit]:
            image = export_dir / entry
            label = export_dir / "labels" / f"{image.stem}.txt"
            if not label.is_file():
                continue
            with Image.open(image) as page:
                mask = ink_mask(page)
            height, width = mask.shape
            rows = parse_clean(label.read_text(encoding="utf-8"))
            yield mask, [row.to_pixels(width, height) for row in rows]

    return learn(pages(), reach)


def describe(rule: SnapRule | None) -> dict[str, Any]:
    """For people and MLflow: margins in thousandths of the page width, or off."""
    if rule is None or not rule.active:
        return {"ink_snap": "off"}
    return {f"ink_snap.{e}": ("off" if v is None else f"{v * 1000:.1f}/1000 w") for e, v in rule.margins.items()}

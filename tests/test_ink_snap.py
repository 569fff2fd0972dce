"""Ink snapping on drawn pages: learned margins, edges pulled back onto the ink, and the cases
where an edge must stay (no ink near it, or ink running past the reach)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from qblock.labeling.demo_data import load_font
from qblock.quality.crops import iou
from qblock.quality.ink_snap import SnapRule, ink_mask, learn, room_below, snap_box

WIDTH, HEIGHT, MARGIN = 800, 1000, 8  # the "person" draws 8 px outside the ink


def drawn_page(rng: random.Random, scanned: bool = False) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Text blocks stacked down the page, each boxed MARGIN px outside its ink."""
    page = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(page)
    font = load_font(18)
    boxes, y = [], 40
    while y < HEIGHT - 200:
        x = rng.randint(40, 80)
        block = Image.new("L", (WIDTH, HEIGHT), 0)  # the block alone, to measure its ink exactly
        for line in range(rng.randint(1, 4)):
            text = " ".join(rng.choice(["solve", "x+3=7", "area", "삼각형", "넓이"]) for _ in range(rng.randint(3, 8)))
            draw.text((x, y + 28 * line), text, font=font, fill=(20, 20, 20))
            ImageDraw.Draw(block).text((x, y + 28 * line), text, font=font, fill=255)
        extent = block.point(lambda v: 255 if v > 127 else 0).getbbox()
        assert extent is not None
        boxes.append((extent[0] - MARGIN, extent[1] - MARGIN, extent[2] + MARGIN, extent[3] + MARGIN))
        y = extent[3] + rng.randint(40, 70)
    if scanned:
        noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 8, (HEIGHT, WIDTH, 1))
        grey = np.asarray(page.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32) * 0.85 + noise
        page = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    return page, boxes


@pytest.fixture(scope="module")
def rule() -> SnapRule:
    rng = random.Random(3)
    pages = [drawn_page(rng) for _ in range(4)]
    return learn((ink_mask(page), boxes) for page, boxes in pages)


def test_the_margin_people_keep_is_learned_from_their_boxes(rule):
    assert rule.active and rule.boxes > 20
    for edge, margin in rule.margins.items():
        assert margin is not None, edge
        assert margin * WIDTH == pytest.approx(MARGIN, abs=1.0), edge


@pytest.mark.parametrize("scanned", [False, True], ids=["clean", "scanned"])
def test_a_box_4px_too_wide_or_too_tight_snaps_back_to_the_persons_box(rule, scanned):
    page, boxes = drawn_page(random.Random(11), scanned)
    mask = ink_mask(page)
    for truth in boxes:
        for shift in (4, -4):
            off = (truth[0] - shift, truth[1] - shift, truth[2] + shift, truth[3] + shift)
            snapped = snap_box(mask, off, rule)
            assert max(abs(a - b) for a, b in zip(snapped, truth, strict=True)) <= 1.5, (truth, off, snapped)
            assert iou(snapped, truth) > iou(off, truth)


def test_an_edge_with_no_ink_near_it_stays_where_the_model_put_it():
    """Where some people's boxes own blank working space below the question, a bottom edge far
    below the ink is not pulled up to it; one a few pixels off still is."""
    rng = random.Random(2)
    pages = []
    for index in range(4):
        page, boxes = drawn_page(rng)
        spaced = [(x0, y0, x1, y1 + (25 if i % 3 == 0 else 0)) for i, (x0, y0, x1, y1) in enumerate(boxes)]
        pages.append((page, spaced) if index else (page, boxes))
    learned = learn((ink_mask(page), boxes) for page, boxes in pages[1:])
    assert learned.margins["bottom"] is not None and "bottom" not in learned.shrink and "right" in learned.shrink
    page, boxes = pages[0]
    mask = ink_mask(page)
    x0, y0, x1, y1 = boxes[0]
    with_space = (x0 - 3, y0, x1, y1 + 30)  # 30 px of working space, left edge 3 px out
    snapped = snap_box(mask, with_space, learned)
    assert snapped[3] == with_space[3]  # bottom: no ink within reach, untouched
    assert snapped[0] == pytest.approx(x0, abs=1.5)  # left: snapped
    assert snap_box(mask, (x0, y0, x1, y1 + 4), learned)[3] == pytest.approx(y1, abs=1.5)


def test_an_edge_people_always_draw_tight_comes_in_across_blank_paper(rule):
    """A right edge 40 px, or 30% of the page width, out over blank paper (beyond the reach: a model's
    box run to the column's edge past a short line) snaps back to the ink plus margin."""
    page, boxes = drawn_page(random.Random(8))
    mask = ink_mask(page)
    x0, y0, x1, y1 = min(boxes, key=lambda box: box[2])  # the shortest lines: the most blank paper beside them
    assert rule.shrink.get("right")
    for out in (40, round(0.3 * WIDTH)):
        assert x1 + out < WIDTH
        assert snap_box(mask, (x0, y0, x1 + out, y1), rule)[2] == pytest.approx(x1, abs=1.5), out


@pytest.mark.parametrize("edge", [0, 1, 2, 3], ids=["left", "top", "right", "bottom"])
def test_an_edge_cutting_through_a_line_of_text_moves_out_past_it(rule, edge):
    """A crop that cuts off the end of a line (or the top or bottom of one) must be fixed by hand: the
    edge moves out over the ink it cuts, past word spaces and line gaps, to the person's box."""
    page, boxes = drawn_page(random.Random(5))
    mask = ink_mask(page)
    moved = 0
    for box in boxes:
        cut = list(box)
        cut[edge] += (1 if edge < 2 else -1) * (MARGIN + 12)  # 12 px into the ink
        snapped = snap_box(mask, tuple(cut), rule)
        assert snapped[edge] == pytest.approx(box[edge], abs=1.5), (box, cut, snapped)
        moved += abs(snapped[edge] - cut[edge]) > 10
    assert moved == len(boxes) >= 5


def test_an_edge_cutting_through_ink_stops_where_that_ink_ends_not_at_the_next_column(rule):
    """Two text blocks side by side, 60 px apart: the left one's box cut short grows to its own ink's
    end and no further."""
    page = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(page)
    font = load_font(18)
    for x in (60, 440):
        for line in range(3):
            draw.text((x, 100 + 28 * line), "solve x+3=7 for the area", font=font, fill=(20, 20, 20))
    mask = ink_mask(page)
    left_ink = ImageDraw.Draw(page).textbbox((60, 100), "solve x+3=7 for the area", font=font)[2]
    assert 440 - left_ink > 40  # the gutter
    snapped = snap_box(mask, (52.0, 92.0, left_ink - 30.0, 180.0), rule)
    assert snapped[2] == pytest.approx(left_ink + MARGIN, abs=2)


def test_an_edge_cutting_through_ink_that_runs_past_the_reach_stays(rule):
    """A box whose top edge lies inside a tall figure whose top is further away than an edge may move
    (``GROW`` of the page width): where that ink ends is not known, so no move."""
    page = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(page)
    draw.rectangle((100, 100, 499, 399), fill=(0, 0, 0))  # ink columns and rows 100..499
    box = (93.0, 250.0, 507.0, 407.0)  # 1 px tight at the left, right and bottom; the top cuts the figure
    snapped = snap_box(ink_mask(page), box, rule)
    assert snapped[1] == box[1]
    assert snapped[0] == pytest.approx(92, abs=1) and snapped[2] == pytest.approx(508, abs=1)
    assert snapped[3] == pytest.approx(408, abs=1)


def test_a_page_without_ink_changes_nothing(rule):
    blank = ink_mask(Image.new("RGB", (WIDTH, HEIGHT), (235, 235, 235)))
    box = (50.0, 60.0, 300.0, 200.0)
    assert snap_box(blank, box, rule) == box


def test_disagreeing_margins_turn_that_edge_off():
    """Boxes whose bottoms lie anywhere below the ink (no habit to learn): bottom is not snapped."""
    rng = random.Random(1)
    pages = []
    for _ in range(3):
        page, boxes = drawn_page(rng)
        pages.append((ink_mask(page), [(x0, y0, x1, y1 + rng.randint(0, 40)) for x0, y0, x1, y1 in boxes]))
    learned = learn(pages)
    assert learned.margins["bottom"] is None and learned.margins["top"] is not None
    assert SnapRule.from_json(learned.to_json()) == learned


def test_a_bottom_has_room_down_to_the_next_ink_less_the_margin(rule):
    page, boxes = drawn_page(random.Random(8))
    mask = ink_mask(page)
    first, second = boxes[0], boxes[1]
    room = room_below(mask, first, rule)
    # the next block's ink starts MARGIN px below its box's top; the room keeps the learned margin above it
    assert abs(room - (second[1] + MARGIN - rule.bottom_hug * WIDTH)) <= 2
    cutting = (first[0], first[1], first[2], first[1] + MARGIN + 6)  # a bottom through the block's first line
    assert room_below(mask, cutting, rule) > cutting[3] + 10  # past that line: its own ink does not stop it
    last = (boxes[-1][0], boxes[-1][1], boxes[-1][2], boxes[-1][3])
    assert room_below(mask, last, rule) == HEIGHT  # nothing below: the whole page


def framed_page(rng: random.Random) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Questions printed in frames, each boxed inside its frame, 3 px from the text (the frame 5 px out)."""
    page, boxes = drawn_page(rng)
    draw = ImageDraw.Draw(page)
    inner = [(x0 + MARGIN - 3, y0 + MARGIN - 3, x1 - MARGIN + 3, y1 - MARGIN + 3) for x0, y0, x1, y1 in boxes]
    for x0, y0, x1, y1 in inner:
        draw.rectangle((x0 - 5, y0 - 5, x1 + 4, y1 + 4), outline=(20, 20, 20), width=1)
    return page, inner


def test_a_rule_leaves_the_boxes_it_was_learned_from_where_they_are():
    """Boxes drawn inside a printed frame: the frame is ink within reach of every edge, and a rule that
    snapped to it would move each of the person's boxes 8 px out, on the pages it learned from as on new
    ones. The rule checks itself on its own boxes and snaps no edge that moves them."""
    rng = random.Random(5)
    pages = [framed_page(rng) for _ in range(4)]
    learned = learn((ink_mask(page), boxes) for page, boxes in pages[1:])
    page, boxes = pages[0]
    mask = ink_mask(page)
    assert all(iou(snap_box(mask, box, learned), box) >= 0.95 for box in boxes)
    plain = learn((ink_mask(page), boxes) for page, boxes in (drawn_page(random.Random(s)) for s in (3, 4, 5)))
    assert all(m is not None for m in plain.margins.values())  # boxes a margin outside plain text: snapped


def packed_page(rng: random.Random) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Questions boxed tight on their ink (the typeset convention), most of them 4-6 px apart (closer than the
    reach), some followed by blank working space."""
    page = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(page)
    font = load_font(18)
    boxes, y = [], 40
    while y < HEIGHT - 120:
        block = Image.new("L", (WIDTH, HEIGHT), 0)
        for line in range(rng.randint(1, 3)):
            text = " ".join(rng.choice(["solve", "x+3=7", "area", "삼각형", "넓이"]) for _ in range(rng.randint(3, 8)))
            draw.text((60, y + 22 * line), text, font=font, fill=(20, 20, 20))
            ImageDraw.Draw(block).text((60, y + 22 * line), text, font=font, fill=255)
        extent = block.point(lambda v: 255 if v > 127 else 0).getbbox()
        assert extent is not None
        boxes.append(extent)
        y = extent[3] + (rng.choice((4, 5, 6, 6, 60)))
    return page, boxes


def test_boxes_on_the_ink_with_ink_closer_than_the_reach_are_snapped_at_a_smaller_reach(monkeypatch):
    """Tight boxes whose neighbours' ink lies closer than the reach: at the full reach the rule would snap an
    edge onto the next question's ink and its self-check turns the top and bottom off; a smaller reach snaps
    all four, and a prediction run on into the blank space below its question (the base model's habit)
    comes back to the person's box, while one already on it stays."""
    from qblock.quality import ink_snap

    rng = random.Random(21)
    pages = [packed_page(rng) for _ in range(4)]
    learned = learn((ink_mask(page), boxes) for page, boxes in pages[1:])
    assert learned.reach < ink_snap.REACH
    monkeypatch.setattr(ink_snap, "REACH_SHARES", (1.0,))
    full = learn((ink_mask(page), boxes) for page, boxes in pages[1:])
    assert full.margins["top"] is None and full.margins["bottom"] is None, full.margins
    for edge, margin in learned.margins.items():
        assert margin is not None and abs(margin * WIDTH) < 1, edge
    page, boxes = pages[0]
    mask = ink_mask(page)
    moved = 0
    for index, box in enumerate(boxes):
        assert iou(snap_box(mask, box, learned), box) > 0.97
        below = boxes[index + 1][1] - box[3] if index + 1 < len(boxes) else HEIGHT - box[3]
        if below > 40:  # blank paper below: a prediction that runs 30 px into it, and 3 px out at the sides
            off = (box[0] - 3, box[1], box[2] + 3, box[3] + 30)
            assert iou(snap_box(mask, off, learned), box) > 0.95, (box, snap_box(mask, off, learned))
            moved += 1
    assert moved >= 1

"""Working-space bottoms: a box that owns blank space below its question ends one page gap above
the next box, the gap measured on the page from the boxes that hug their ink; a column's last one
ends at the column's end, where the labeler's boxes agree on it, or back on its ink where the
model's bottom is nearer that; and no bottom moves down across ink (a section title between two
questions)."""

from __future__ import annotations

import random

import pytest

from qblock.quality.spacing import learn_column_end, learn_spacing, settle_bottoms

HEIGHT = 2000


def column(rng: random.Random, gap: float, space_every: int = 3):
    """True boxes down a column: ink heights vary, every third question owns 60-120 px of space."""
    boxes, hugs, y = [], [], 40.0
    for index in range(8):
        bottom = y + rng.uniform(60, 140)
        space = rng.uniform(60, 120) if index % space_every == 1 else 0.0
        boxes.append((50.0, y, 500.0, bottom + space))
        hugs.append(space == 0)
        y = bottom + space + gap + rng.uniform(-1, 1)
    return boxes, hugs


def test_a_working_space_bottom_settles_one_page_gap_above_the_next_box():
    boxes, hugs = column(random.Random(1), gap=22)
    model = [(x0, y0, x1, y1 - 35 if not hug else y1) for (x0, y0, x1, y1), hug in zip(boxes, hugs, strict=True)]
    settled = settle_bottoms(model, hugs, HEIGHT, slack=6)
    assert not hugs[1] and not hugs[-1]
    for truth, got, hug in zip(boxes[:-1], settled, hugs, strict=False):
        assert abs(got[3] - truth[3]) <= 2.5, (truth, got, hug)  # the 35 px the model missed, found again
    assert settled[-1] == model[-1]  # the column's last question: no box below, nothing to go by


def test_the_page_gap_is_the_smaller_one_where_the_model_cut_working_space_short():
    """Three of the model's boxes end at their ink where the question owns 70-80 px below it: to the
    page they look like hugging boxes with a wide gap under them. The gap the layout has is the small
    one that recurs, and the working-space box the model did see settles on it, not on the wide ones."""
    y, boxes, hugs = 40.0, [], []
    for below in (20, 90, 95, 100, 20, None, 20):  # the space under each box as the model drew it
        top = y
        y += 100
        boxes.append((50.0, top, 500.0, y))
        hugs.append(below is not None)
        y += 20 + 60 if below is None else below  # the working-space box: its bottom 60 px above the truth
    truth_bottom = boxes[6][1] - 20
    settled = settle_bottoms(boxes, hugs, HEIGHT, slack=6)
    assert settled[5][3] == pytest.approx(truth_bottom)  # the median gap (90) would have put it 70 px higher
    assert [box for index, box in enumerate(settled) if index != 5] == [b for i, b in enumerate(boxes) if i != 5]


def test_boxes_with_no_box_below_or_no_gap_to_measure_stay():
    boxes, hugs = column(random.Random(2), gap=22)
    last = [(x0, y0, x1, y1 - 30) for x0, y0, x1, y1 in boxes[-1:]]
    assert settle_bottoms(last, [False], HEIGHT, slack=6) == last  # alone on the page
    two_spaced = [(50.0, 40.0, 500.0, 200.0), (50.0, 260.0, 500.0, 400.0)]
    assert settle_bottoms(two_spaced, [False, False], HEIGHT, slack=6) == two_spaced  # no hugging box: no gap
    side_by_side = [(50.0, 40.0, 400.0, 200.0), (450.0, 40.0, 800.0, 120.0), (450.0, 150.0, 800.0, 300.0)]
    assert settle_bottoms(side_by_side, [False, True, True], HEIGHT, slack=6)[0] == side_by_side[0]  # other column


def test_the_habit_is_learned_only_where_the_labeler_has_it():
    rng = random.Random(3)
    pages = [(*column(rng, gap=rng.choice((12, 30))), HEIGHT, 6.0) for _ in range(4)]
    assert learn_spacing(pages)
    scattered = []
    for boxes, hugs, height, slack in pages:  # working space cut off anywhere, not where the layout says
        cut = [(x0, y0, x1, y1 - (0 if hug else rng.uniform(20, 60))) for (x0, y0, x1, y1), hug in
               zip(boxes, hugs, strict=True)]
        scattered.append((cut, hugs, height, slack))
    assert not learn_spacing(scattered)


def last_owns_the_column(boxes, hugs, end: float):
    """The column's last question owns the space down to ``end`` (a share of the page height)."""
    x0, y0, x1, _ = boxes[-1]
    return [*boxes[:-1], (x0, y0, x1, end * HEIGHT)], [*hugs[:-1], False]


def test_a_columns_last_working_space_ends_where_the_labelers_boxes_end_it():
    rng = random.Random(4)
    pages = []
    for _ in range(6):
        boxes, hugs = last_owns_the_column(*column(rng, gap=20), end=0.93 + rng.uniform(-0.004, 0.004))
        pages.append((boxes, hugs, HEIGHT, 6.0))
    assert learn_column_end(pages) == pytest.approx(0.93, abs=0.005)
    boxes, hugs = last_owns_the_column(*column(random.Random(5), gap=20), end=0.93)
    model = [*boxes[:-1], (*boxes[-1][:3], boxes[-1][3] - 240)]  # the model ended the space 240 px early
    settled = settle_bottoms(model, hugs, HEIGHT, slack=6, column_end=learn_column_end(pages))
    assert abs(settled[-1][3] - 0.93 * HEIGHT) <= 10


def test_a_columns_last_bottom_goes_to_the_column_end_or_its_ink_whichever_the_model_is_nearer():
    boxes, hugs = last_owns_the_column(*column(random.Random(5), gap=20), end=0.93)
    x0, y0, x1, _ = boxes[-1]
    ink_end = y0 + 150  # the last question's ink (plus the margin people keep) ends here
    ink_ends: list[float | None] = [None] * (len(boxes) - 1) + [ink_end]
    column_end = 0.93 * HEIGHT
    for model_bottom, expected in ((ink_end + 40, ink_end), (column_end - 40, column_end)):
        model = [*boxes[:-1], (x0, y0, x1, model_bottom)]
        settled = settle_bottoms(model, hugs, HEIGHT, slack=6, column_end=0.93, ink_ends=ink_ends)
        assert settled[-1][3] == pytest.approx(expected), model_bottom
        assert settled[:-1] == settle_bottoms(model, hugs, HEIGHT, slack=6, column_end=0.93)[:-1]  # the rest as before
    model = [*boxes[:-1], (x0, y0, x1, ink_end + 40)]
    no_ink = settle_bottoms(model, hugs, HEIGHT, slack=6, column_end=0.93, ink_ends=[None] * len(boxes))
    assert no_ink[-1][3] == pytest.approx(column_end)  # no ink end known: the column's end, as the labeler's boxes say


def test_no_column_end_is_learned_where_the_labeler_ends_the_last_space_anywhere():
    rng = random.Random(6)
    pages = [(*last_owns_the_column(*column(rng, gap=20), end=rng.uniform(0.75, 0.95)), HEIGHT, 6.0) for _ in range(8)]
    assert learn_column_end(pages) is None


def test_a_bottom_never_moves_down_across_ink():
    boxes, hugs = column(random.Random(1), gap=22)
    model = [(x0, y0, x1, y1 - 35 if not hug else y1) for (x0, y0, x1, y1), hug in zip(boxes, hugs, strict=True)]
    title = model[1][3] + 12  # a section title's text 12 px under the working-space box's predicted bottom
    rooms = [HEIGHT * 1.0] * len(model)
    rooms[1] = title - 4
    settled = settle_bottoms(model, hugs, HEIGHT, slack=6, rooms=rooms)
    assert settled[1][3] == title - 4  # up to the title, not across it to the next question
    assert settle_bottoms(model, hugs, HEIGHT, slack=6)[1][3] > title  # without the ink, it would have crossed

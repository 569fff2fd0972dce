"""The crop rate's matching and the threshold evaluate chooses, on boxes drawn by hand."""

from __future__ import annotations

import pytest

from qblock.quality.crops import ValPage, choose_threshold, match, score_at


def test_a_crop_counts_only_at_iou_09_and_only_once():
    truth = [(0, 0, 100, 100), (0, 200, 100, 300)]
    assert match(truth, [(0, 0, 100, 100)], 0.9) == 1
    assert match(truth, [(0, 0, 100, 88)], 0.9) == 0  # a cut-off last line (IoU 0.88)
    assert match(truth, [(0, 0, 100, 100), (0, 0, 100, 99)], 0.9) == 1  # a double is no second good crop
    assert match(truth, [(0, 0, 100, 300)], 0.9) == 0  # two questions in one crop


def test_the_threshold_is_the_one_with_the_best_crop_f_score_recall_weighted_twice():
    truth = [(0, 0, 100, 100), (0, 200, 100, 300)]
    page = ValPage("images/p.png", (100, 300), truth,
                   [((0, 0, 100, 100), 0.9), ((0, 200, 100, 300), 0.6), ((0, 120, 100, 180), 0.3)])
    assert score_at([page], 0.3).rate == 1.0 and score_at([page], 0.3).crops == 3
    best = choose_threshold([page])
    assert best.conf == pytest.approx(0.6) and best.rate == 1.0 and best.crops == 2
    # a third question found only at 0.3, with two false crops above it: F1 stops at 0.8 (two of three),
    # F2 goes down to 0.3 and crops all three (a box to delete costs less than one to draw)
    truth = [(0, 0, 100, 100), (0, 200, 100, 300), (0, 400, 100, 500)]
    page = ValPage("images/p.png", (100, 600), truth,
                   [((0, 0, 100, 100), 0.9), ((0, 200, 100, 300), 0.8), ((0, 520, 100, 580), 0.35),
                    ((0, 120, 100, 180), 0.32), ((0, 400, 100, 500), 0.3)])
    assert choose_threshold([page], beta=1).conf == pytest.approx(0.8)
    best = choose_threshold([page])
    assert best.conf == pytest.approx(0.3) and best.rate == 1.0 and best.crops == 5


def test_each_documents_crop_rate_is_of_its_own_pages_worst_first():
    from qblock.quality.crops import crop_rate_by_document

    truth = [(0, 0, 100, 100), (0, 200, 100, 300)]
    both = [(box, 0.9) for box in truth]
    pages = [ValPage("images/a1.png", (100, 300), truth, both),  # workbook a: 4 of 4
             ValPage("images/a2.png", (100, 300), truth, both),
             ValPage("images/b1.png", (100, 300), truth, both[:1]),  # workbook b: 3 of 4
             ValPage("images/b2.png", (100, 300), truth, both),
             ValPage("images/c1.png", (100, 300), truth, [((0, 0, 100, 50), 0.9)])]  # named by no document
    rates = crop_rate_by_document(pages, 0.5, {"images/a1.png": "a", "images/a2.png": "a",
                                               "images/b1.png": "b", "images/b2.png": "b"})
    assert rates == {"images/c1.png": 0.0, "b": 0.75, "a": 1.0} and list(rates) == ["images/c1.png", "b", "a"]
    assert crop_rate_by_document(pages, 0.95, {}) == dict.fromkeys(["images/a1.png", "images/a2.png",
                                                                      "images/b1.png", "images/b2.png",
                                                                      "images/c1.png"], 0.0)


def test_precision_and_recall_are_of_the_crops_made_at_the_threshold_propose_uses():
    from qblock.quality.crops import ValPage, found_at

    page = ValPage("images/p.png", (100, 100), truth=[(0, 0, 10, 10), (0, 50, 10, 60), (50, 50, 60, 60)],
                   predicted=[((0, 0, 10, 10), 0.9), ((0, 52, 10, 62), 0.6), ((80, 80, 90, 90), 0.4),
                              ((50, 50, 60, 60), 0.1)])
    assert found_at([page], 0.5) == {"precision": 1.0, "recall": round(2 / 3, 5)}  # two crops, both questions
    assert found_at([page], 0.3) == {"precision": round(2 / 3, 5), "recall": round(2 / 3, 5)}


def test_the_confusion_matrix_counts_what_a_person_does_at_the_threshold_propose_uses(tmp_path):
    """Good (IoU >= 0.9), loose (0.5-0.9), missed and false crops at the chosen threshold, not at 0.001."""
    from PIL import Image

    from qblock.quality.crops import ValPage
    from qblock.quality.outcomes import count, draw

    truth = [(0, 0, 100, 100), (0, 200, 100, 300), (0, 400, 100, 500), (0, 600, 100, 700)]
    predicted = [((1, 1, 100, 100), 0.9),  # good
                 ((0, 200, 100, 270), 0.8),  # loose: IoU 0.7
                 ((300, 0, 400, 100), 0.6),  # false
                 ((0, 400, 100, 500), 0.2)]  # good, but under the threshold: the question is missed
    page = ValPage("images/a.png", (500, 800), truth, predicted)
    at = count([page], 0.5)
    assert (at.good, at.loose, at.missed, at.false_crops) == (1, 1, 2, 1)
    assert (count([page], 0.1).good, count([page], 0.1).missed) == (2, 1)
    out = draw(at, tmp_path / "confusion_matrix.png")
    with Image.open(out) as image:
        assert image.width >= 800 and image.height >= 700

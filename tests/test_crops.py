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


def test_the_threshold_is_the_one_with_the_best_crop_f1():
    truth = [(0, 0, 100, 100), (0, 200, 100, 300)]
    page = ValPage("images/p.png", (100, 300), truth,
                   [((0, 0, 100, 100), 0.9), ((0, 200, 100, 300), 0.6), ((0, 120, 100, 180), 0.3)])
    assert score_at([page], 0.3).rate == 1.0 and score_at([page], 0.3).crops == 3
    best = choose_threshold([page])
    assert best.conf == pytest.approx(0.6) and best.rate == 1.0 and best.crops == 2

"""Ink snapping and the working-space rules learn their conventions from the training boxes: fed
the demo's boxes (a labeler's margin, working space owned down to the next question or the
column's end) they learn those; fed the same questions boxed tight to their ink (as typeset pages
are, and as a labeler who groups only text blocks does), they learn no margin and no working
space, and move nothing down. Nothing is trained: the boxes are the demo generator's own."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from qblock.labeling.demo_data import write_demo_dataset
from qblock.quality.crop_page import crops_at, snap
from qblock.quality.crops import iou
from qblock.quality.ink_snap import hugs_ink, ink_extent, ink_mask, learn, snap_box

Box = tuple[float, float, float, float]


@pytest.fixture(scope="module")
def demo_pages(tmp_path_factory) -> list[tuple[np.ndarray, list[Box]]]:
    """(ink mask, the app's boxes) for 4 workbooks x 5 pages of the demo generator."""
    root = tmp_path_factory.mktemp("conventions")
    write_demo_dataset(root, documents=4, pages=5, seed=7)
    pages = []
    for groups in sorted(root.glob("documents/*/groups/*_groups.json")):
        data = json.loads(groups.read_text(encoding="utf-8"))
        with Image.open(groups.parent.parent / "pages" / f"{data['page']}.png") as image:
            mask = ink_mask(image)
        boxes = [(b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"])
                 for b in (g["combinedBbox"] for g in data["groups"])]
        pages.append((mask, boxes))
    return pages


def tight(mask: np.ndarray, boxes: list[Box]) -> list[Box]:
    """The same questions boxed tight to their ink: the typeset convention."""
    return [tuple(float(v) for v in extent) for box in boxes if (extent := ink_extent(mask, box)) is not None]


def test_the_demos_convention_is_learned_from_the_demos_boxes(demo_pages):
    rule = learn(demo_pages[4:])
    assert rule.margins["left"] is not None and rule.margins["top"] is not None
    # the demo's labeler keeps 3 to 8 px (at 100 dpi, A4: 827 px wide) outside the ink, more at higher dpi
    assert 3 / 827 <= rule.margins["left"] <= 8 / 827
    assert rule.settles, "the demo's boxes own working space down to the next question or the column's end"


def test_tight_boxes_teach_no_margin_and_no_working_space(demo_pages):
    rule = learn((mask, tight(mask, boxes)) for mask, boxes in demo_pages[4:])
    for edge, margin in rule.margins.items():
        assert margin is not None and margin * 827 < 0.6, (edge, margin)  # under a pixel at 100 dpi
    assert not rule.settles and rule.column_end is None and not rule.spacing
    assert rule.bottom_hug is not None and rule.bottom_hug * 827 < 0.6


def close(truth: list[Box], boxes: list[Box], width: int) -> int:
    """How many of ``boxes`` lie within 0.3 % of the page width (2.5 px at 100 dpi) of their true box on every edge."""
    return sum(max(abs(a - b) for a, b in zip(t, box, strict=True)) <= 0.003 * width
               for t, box in zip(truth, boxes, strict=True))


@pytest.mark.parametrize("convention", ["demo", "tight"])
def test_each_convention_snaps_off_predictions_back_to_its_own_boxes(demo_pages, convention):
    """Predictions 5 px outside on every edge come back to the boxes of the convention the rule was
    learned from (within 0.3 % of the page width), and not to the other convention's."""
    convert = (lambda mask, boxes: boxes) if convention == "demo" else tight
    rule = learn((mask, convert(mask, boxes)) for mask, boxes in demo_pages[4:])
    after = other_after = total = 0
    for mask, boxes in demo_pages[:4]:
        truth = convert(mask, boxes)
        other = tight(mask, boxes) if convention == "demo" else boxes
        off = [((x0 - 5, y0 - 5, x1 + 5, y1 + 5), 1.0) for x0, y0, x1, y1 in truth]
        # as evaluate and propose crop: snapped, then working-space bottoms settled among the crops
        snapped = [box for box, _ in crops_at(snap(mask, off, rule), 0.5, rule, (mask.shape[1], mask.shape[0]))]
        total += len(truth)
        after += close(truth, snapped, mask.shape[1])
        other_after += close(other, snapped, mask.shape[1])
    assert after >= 0.8 * total, (convention, after, total)
    assert other_after <= 0.2 * total, (convention, other_after, total)


def test_tight_boxes_never_grow_into_blank_space_below(demo_pages):
    """With a rule learned from tight boxes, a tight prediction whose question is followed by blank
    working space keeps its bottom: no bottom moves down."""
    rule = learn((mask, tight(mask, boxes)) for mask, boxes in demo_pages[4:])
    for mask, boxes in demo_pages[:4]:
        for box in tight(mask, boxes):
            assert hugs_ink(mask, box, rule)
            assert snap_box(mask, box, rule)[3] == pytest.approx(box[3], abs=1.0)
            assert iou(snap_box(mask, box, rule), box) > 0.97


def test_the_demo_pages_are_where_the_conventions_differ(demo_pages):
    """The two conventions must really differ on these pages, or the tests above prove nothing."""
    differ = sum(iou(a, b) < 0.9 for mask, boxes in demo_pages for a, b in zip(boxes, tight(mask, boxes),
                                                                                strict=True))
    assert differ >= 10

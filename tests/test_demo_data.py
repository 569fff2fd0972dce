"""`qblock demo-data` pages look like the workbooks people have: several paper sizes and
resolutions, clean and scanned pages, Korean text in a real Hangul font, headers and page
numbers outside every question, and questions that never overlap."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from qblock.labeling.demo_data import has_hangul_font, write_demo_dataset
from qblock.quality.crops import iou


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root, documents=10, pages=1, seed=0)
    found = []
    for groups_file in sorted(root.glob("documents/*/groups/*_groups.json")):
        groups = json.loads(groups_file.read_text(encoding="utf-8"))
        image = groups_file.parent.parent / "pages" / f"{groups['page']}.png"
        with Image.open(image) as page:
            grey = np.asarray(page.convert("L"))
        boxes = [(b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"])
                 for b in (g["combinedBbox"] for g in groups["groups"])]
        found.append((groups, grey, boxes))
    return found


def test_paper_sizes_and_resolutions_vary_and_the_json_says_the_image_size(pages):
    sizes = {grey.shape[::-1] for _, grey, _ in pages}
    assert len(sizes) >= 3
    assert {(g["imageWidth"], g["imageHeight"]) for g, _, _ in pages} == sizes
    assert min(w for w, _ in sizes) < 900 < 1500 < max(w for w, _ in sizes)  # 100 dpi and 200 dpi pages


def test_some_pages_are_scanned_grey_and_noisy(pages):
    paper = [float(np.median(grey)) for _, grey, _ in pages]
    assert any(p >= 254 for p in paper) and any(180 < p < 245 for p in paper)


def test_questions_lie_on_the_page_never_overlap_and_leave_the_header_and_page_number_out(pages):
    for groups, grey, boxes in pages:
        height, width = grey.shape
        assert boxes
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert all(iou(a, b) == 0 for a, b in combinations(boxes, 2)), groups["page"]
        header_ink = np.flatnonzero((grey[: int(0.06 * height)] < 128).sum(axis=1))
        page_number_ink = np.flatnonzero((grey[int(0.95 * height):] < 128).sum(axis=1))
        assert header_ink.size and page_number_ink.size  # drawn, and outside every question:
        assert min(y0 for _, y0, _, _ in boxes) > header_ink.max()
        assert max(y1 for _, _, _, y1 in boxes) < int(0.95 * height) + page_number_ink.min()


def test_korean_text_is_drawn_in_a_hangul_font():
    assert has_hangul_font()  # NanumGothic from the koreanize-matplotlib dependency


def test_no_question_box_takes_in_a_section_title():
    """A section title is drawn only above a question that fits under it: one left at a column's end
    fell inside the box of the column's last question, which owns the blank space down to the end."""
    import random
    from dataclasses import replace

    from qblock.labeling.demo_data import TITLE_GREY, random_style, render_page

    titles = 0
    for seed in range(40):
        rng = random.Random(seed)
        style = replace(random_style(rng, pad=6), scanned=False)  # exact greys: the title's fill is findable
        image, boxes = render_page(rng, "workbook", 1, 1, style)
        grey = np.asarray(image.convert("L"))
        title_rows = (grey == TITLE_GREY).sum(axis=1) >= 0.3 * style.width / 2
        titles += int(title_rows.any())
        for box in boxes:
            inside = grey[box.y:box.y + box.height, box.x:box.x + box.width] == TITLE_GREY
            assert not (inside.sum(axis=1) >= 0.5 * box.width).any(), (seed, box)
    assert titles >= 5  # pages with section titles were drawn, or this proves nothing

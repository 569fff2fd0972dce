from __future__ import annotations

import pytest
from tests.conftest import bbox, write_page

from qblock.core.errors import UserError
from qblock.labeling.status import collect_status, print_status


def test_progress_counts_labeled_negative_and_unlabeled_pages(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "수학 1", "page_001", [bbox(0, 0, 10, 10), bbox(20, 20, 10, 10)])
    write_page(root, "수학 1", "page_002", [])  # labeled: no questions on it
    for page in ("page_003", "page_004"):
        write_page(root, "수학 1", page, [])
        (root / "documents" / "수학 1" / "groups" / f"{page}_groups.json").unlink()
    write_page(root, "done doc", "page_001", [bbox(0, 0, 10, 10)])
    statuses = {s.document: s for s in collect_status(root)}
    doc = statuses["수학 1"]
    assert (len(doc.pages), len(doc.labeled), doc.questions) == (4, 2, 2)
    assert doc.unlabeled == ["page_003", "page_004"]
    print_status(console, list(statuses.values()))
    assert "page_003, page_004" in console.text and "done" in console.text
    assert "3 of 5 pages labeled (60%)" in console.text


def test_unreadable_groups_file_is_reported(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", None, raw_groups="{broken")
    print_status(console, collect_status(root))
    assert "unreadable groups file(s) for page_001" in console.text


def test_missing_dataset_root(tmp_path):
    with pytest.raises(UserError, match="no documents/ folder"):
        collect_status(tmp_path)


def test_pages_the_model_was_unsure_about_come_first(tmp_path, console):
    import json

    root = tmp_path / "app"
    for page in ("page_001", "page_002", "page_003", "page_004"):
        write_page(root, "doc", page, [])
        (root / "documents" / "doc" / "groups" / f"{page}_groups.json").unlink()
    proposals = root / "documents" / "doc" / "proposals"
    proposals.mkdir()
    for page, unsure, confidences in (("page_001", 0, [0.95]), ("page_002", 3, [0.4, 0.9]), ("page_003", 3, [0.3])):
        groups = [{"combinedBbox": {"x": 0, "y": 0, "width": 5, "height": 5}, "confidence": c} for c in confidences]
        (proposals / f"{page}_groups.json").write_text(json.dumps({"groups": groups, "unsure_boxes": unsure}))
    (doc,) = collect_status(root)
    assert doc.unlabeled == ["page_003", "page_002", "page_001", "page_004"]  # page_004: no proposal yet
    print_status(console, [doc])
    assert "page_003 (3 unsure), page_002 (3 unsure), page_001 (0 unsure), page_004" in console.text

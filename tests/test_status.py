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

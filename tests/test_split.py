from __future__ import annotations

import json

import pytest

from qblock import split
from qblock.config import SplitParams
from qblock.errors import UserError


def write_manifest(export_dir, documents: dict[str, int]) -> None:
    pages = [{"key": f"{d}__page_{i:03d}", "document": d, "page": f"page_{i:03d}",
              "image": f"documents/{d}/pages/p.png"} for d, n in documents.items() for i in range(n)]
    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / "manifest.json").write_text(json.dumps({"summary": {}, "pages": pages}))


def test_pages_of_a_document_stay_together_and_runs_are_deterministic(tmp_path, console):
    write_manifest(tmp_path / "yolo", {f"doc{i}": 3 for i in range(12)})
    split.run(tmp_path / "yolo", tmp_path / "split", SplitParams(), console)
    first = {s: (tmp_path / "split" / f"{s}.txt").read_text() for s in ("train", "val")}
    split.run(tmp_path / "yolo", tmp_path / "split2", SplitParams(), console)
    assert first == {s: (tmp_path / "split2" / f"{s}.txt").read_text() for s in ("train", "val")}
    owners: dict[str, set[str]] = {}
    for s, text in first.items():
        for line in text.splitlines():
            owners.setdefault(line.split("__")[0].removeprefix("images/"), set()).add(s)
    assert all(len(splits) == 1 for splits in owners.values())
    assert {s for splits in owners.values() for s in splits} == {"train", "val"}


def test_adding_documents_never_moves_an_existing_one():
    params = SplitParams(val_fraction=0.2, test_fraction=0.1)
    old = [f"workbook {i}" for i in range(40)]
    before, _ = split.assign_documents(old, params)
    after, _ = split.assign_documents(old + [f"new workbook {i}" for i in range(200)], params)
    assert {d: after[d] for d in old} == before
    assert set(after.values()) == {"train", "val", "test"}


def test_pins_override_the_hash():
    docs = [f"d{i}" for i in range(10)]
    free, _ = split.assign_documents(docs, SplitParams())
    target = next(d for d in docs if free[d] == "train")
    pinned, _ = split.assign_documents(docs, SplitParams(pin={target: "val"}))
    assert pinned[target] == "val"


def test_tiny_collection_still_gets_a_val_document_and_says_so():
    docs = ["alpha", "beta"]  # stable scores 0.24 and 0.82: neither hashes below 0.01
    assignment, notes = split.assign_documents(docs, SplitParams(val_fraction=0.01))
    assert sorted(assignment.values()) == ["train", "val"]
    assert "Pin it" in notes[-1]


@pytest.mark.parametrize(("params", "message"), [
    (SplitParams(pin={"a": "validation"}), "use one of train, val, test"),
    (SplitParams(val_fraction=0.7, test_fraction=0.4), "must be below 1"),
    (SplitParams(val_fraction=1.5), r"must lie in \[0, 1\)"),
])
def test_bad_split_params_are_clear_errors(params, message):
    with pytest.raises(UserError, match=message):
        split.assign_documents(["a", "b", "c"], params)


def test_single_document_cannot_fill_both_train_and_val():
    with pytest.raises(UserError, match="val is empty"):
        split.assign_documents(["only"], SplitParams(val_fraction=0.01))


def test_missing_manifest_names_the_file(tmp_path, console):
    with pytest.raises(UserError, match=r"manifest.json: cannot read the export manifest"):
        split.run(tmp_path / "nothing", tmp_path / "split", SplitParams(), console)

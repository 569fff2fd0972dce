from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import params_of

from qblock.core.errors import UserError
from qblock.data.yolo_folder import DocumentRecord, Manifest, PageRecord
from qblock.data.yolo_folder import write_manifest as write_manifest_file
from qblock.stages import split


def write_manifest(export_dir, documents: dict[str, int]) -> None:
    records = {d: DocumentRecord([PageRecord(f"{d}__page_{i:03d}", d, f"page_{i:03d}", f"documents/{d}/pages/p.png",
                                             100, 100, [1, 1], [1, 1], "", 0) for i in range(n)])
               for d, n in documents.items()}
    write_manifest_file(export_dir, Manifest({}, {d: r.as_json() for d, r in records.items()}), {}, {})


def test_pages_of_a_document_stay_together_and_runs_are_deterministic(tmp_path, console):
    write_manifest(tmp_path / "yolo", {f"doc{i}": 3 for i in range(12)})
    split.run(tmp_path / "yolo", tmp_path / "split", params_of("split"), console)
    first = {s: (tmp_path / "split" / f"{s}.txt").read_text() for s in ("train", "val")}
    split.run(tmp_path / "yolo", tmp_path / "split2", params_of("split"), console)
    assert first == {s: (tmp_path / "split2" / f"{s}.txt").read_text() for s in ("train", "val")}
    owners: dict[str, set[str]] = {}
    for s, text in first.items():
        for line in text.splitlines():
            owners.setdefault(line.split("__")[0].removeprefix("images/"), set()).add(s)
    assert all(len(splits) == 1 for splits in owners.values())
    assert {s for splits in owners.values() for s in splits} == {"train", "val"}


def test_adding_documents_never_moves_an_existing_one():
    params = params_of("split", val_fraction=0.2, test_fraction=0.1)
    old = [f"workbook {i}" for i in range(40)]
    before, _ = split.assign_documents(old, params)
    after, _ = split.assign_documents(old + [f"new workbook {i}" for i in range(200)], params)
    assert {d: after[d] for d in old} == before
    assert set(after.values()) == {"train", "val", "test"}


def test_pins_override_the_hash():
    docs = [f"d{i}" for i in range(10)]
    free, _ = split.assign_documents(docs, params_of("split"))
    target = next(d for d in docs if free[d] == "train")
    pinned, _ = split.assign_documents(docs, params_of("split", pin={target: "val"}))
    assert pinned[target] == "val"


def test_tiny_collection_still_gets_a_val_document_and_says_so():
    docs = ["alpha", "beta"]  # stable scores 0.24 and 0.82: neither hashes below 0.01
    assignment, notes = split.assign_documents(docs, params_of("split", val_fraction=0.01))
    assert sorted(assignment.values()) == ["train", "val"]
    assert "Pin it" in notes[-1]


@pytest.mark.parametrize(("params", "message"), [
    (params_of("split", pin={"a": "validation"}), "use one of train, val, test"),
    (params_of("split", val_fraction=0.7, test_fraction=0.4), "must be below 1"),
    (params_of("split", val_fraction=1.5), r"must lie in \[0, 1\)"),
])
def test_bad_split_params_are_clear_errors(params, message):
    with pytest.raises(UserError, match=message):
        split.assign_documents(["a", "b", "c"], params)


def test_single_document_cannot_fill_both_train_and_val():
    with pytest.raises(UserError, match="every page is in one document"):
        split.assign_documents(["only"], params_of("split", val_fraction=0.01))
    with pytest.raises(UserError, match="val is empty"):  # two documents, neither hashed into val or pinned there
        split.assign_documents(["a", "b"], params_of("split", val_fraction=0.0001, pin={"a": "train"}))


def test_missing_manifest_names_the_file(tmp_path, console):
    with pytest.raises(UserError, match=r"manifest.json: cannot read the export manifest"):
        split.run(tmp_path / "nothing", tmp_path / "split", params_of("split"), console)


def test_pages_all_in_one_document_say_why_split_cannot_and_what_to_do(tmp_path, console):
    """An export whose pages are named by bare numbers lands in one document: split says so."""
    write_manifest(tmp_path / "yolo", {"scans": 100})
    with pytest.raises(UserError, match=r"every page is in one document \('scans'\).*--into NAME"):
        split.run(tmp_path / "yolo", tmp_path / "split", params_of("split"), console)
    assert not (tmp_path / "split" / "train.txt").exists()


def test_a_test_split_of_whole_documents_from_five_documents_on():
    params = params_of("split", val_fraction=0.25, test_fraction=0.2)
    assert params_of("split").test_fraction > 0  # on by default
    many = [f"workbook {i}" for i in range(40)]
    assignment, _ = split.assign_documents(many, params)
    for document, side in assignment.items():  # val below 0.25, test in [0.25, 0.45): val never moves
        score = split.document_score(document, "qblock")
        assert side == ("val" if score < 0.25 else "test" if score < 0.45 else "train")
    five = ["d0", "d1", "d2", "d3", "d4"]
    assignment, notes = split.assign_documents(five, params)
    assert "test" in assignment.values() and list(assignment.values()).count("train") >= 3
    assignment, notes = split.assign_documents(five[:4], params)
    assert "test" not in assignment.values()
    assert "4 document(s) are too few for a test split" in notes[0]


def test_a_split_far_from_its_fraction_is_named(tmp_path, console):
    documents = {f"doc{i}": 2 for i in range(8)}
    val = next(d for d in (f"big {i}" for i in range(100)) if split.document_score(d, "qblock") < 0.25)
    documents[val] = 60  # one large workbook hashed into val: most of the pages
    write_manifest(tmp_path / "yolo", documents)
    split.run(tmp_path / "yolo", tmp_path / "split", params_of("split"), console)
    notes = json.loads((tmp_path / "split" / "split.json").read_text())["notes"]
    assert any(note.startswith("val holds ") and "split.val_fraction asks for 25%" in note for note in notes)


def test_training_never_sees_the_test_list_and_evaluate_does(tmp_path):
    import yaml

    from qblock.model.dataset_yaml import write_dataset_yaml

    write_manifest(tmp_path / "yolo", {f"doc{i}": 2 for i in range(10)})
    manifest = tmp_path / "yolo" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"summary": {"class_names": ["Q"]}}))
    for side in ("train", "val", "test"):
        (tmp_path / "split").mkdir(exist_ok=True)
        (tmp_path / "split" / f"{side}.txt").write_text(f"images/{side}.png\n")
    trained = yaml.safe_load(write_dataset_yaml(tmp_path / "yolo", tmp_path / "split", tmp_path / "a").read_text())
    evaluated = yaml.safe_load(write_dataset_yaml(tmp_path / "yolo", tmp_path / "split", tmp_path / "b",
                                                  test=True).read_text())
    assert "test" not in trained and not (tmp_path / "a" / "test.txt").exists()
    assert Path(evaluated["test"]).read_text().strip().endswith("test.png")

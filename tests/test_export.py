from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import bbox, params_of, write_page

from qblock.core.errors import StageFailed, UserError
from qblock.stages import export


def run_export(root: Path, tmp_path: Path, console, params=None) -> dict:
    params = params or params_of("export")
    return export.run(root, tmp_path / "yolo", params, tmp_path / "reports" / "export.json", console)


def test_box_becomes_a_normalised_yolo_row(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [bbox(20, 10, 100, 50)], size=(200, 100))
    run_export(root, tmp_path, console)
    label = (tmp_path / "yolo" / "labels" / "doc__page_001.txt").read_text()
    assert label == "0 0.350000 0.350000 0.500000 0.500000\n"
    assert (tmp_path / "yolo" / "images" / "doc__page_001.png").is_file()


def test_same_page_name_in_two_workbooks_does_not_collide(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "수학 1-1", "page_001", [bbox(0, 0, 10, 10)])
    write_page(root, "수학_1-1", "page_001", [bbox(0, 0, 20, 20), bbox(50, 50, 20, 20)])
    summary = run_export(root, tmp_path, console)
    labels = sorted((tmp_path / "yolo" / "labels").glob("*.txt"))
    assert summary["pages"] == 2 and len(labels) == 2
    assert sorted(len(p.read_text().splitlines()) for p in labels) == [1, 2]


@pytest.mark.parametrize("document", [".hidden doc", "a.b c", "기하 연습.v2"])
def test_odd_document_ids_stay_inside_the_output_folder(tmp_path, console, document):
    root = tmp_path / "app"
    write_page(root, document, "page_001", [bbox(0, 0, 10, 10)])
    run_export(root, tmp_path, console)
    out = tmp_path / "yolo"
    written = [p for p in out.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert not any(p.name.startswith(".") for p in written)


def test_safe_name_never_escapes():
    from qblock.data.labels import safe_name

    for name in ["..", "../x", "a/b", "a\\b", ".", ""]:
        safe = safe_name(name)
        assert "/" not in safe and "\\" not in safe and safe not in {".", ".."}
    assert safe_name("a b") != safe_name("a_b")


BAD_INPUTS = {
    "malformed JSON": (None, '{"groups": [', "malformed JSON"),
    "groups missing": (None, '{"page": "p"}', "no `groups` list"),
    "groups not a list": (None, '{"groups": {"a": 1}}', "not a list"),
    "group without combinedBbox": ([{"id": "g1", "type": "question"}], None, "group 0: no combinedBbox"),
    "non-numeric": ([bbox("10", 0, 10, 10)], None, "non-numeric value: x='10'"),
    "NaN": (None, '{"groups": [{"combinedBbox": {"x": NaN, "y": 0, "width": 5, "height": 5}}]}', "non-numeric"),
    "zero width": ([bbox(10, 10, 0, 10)], None, "zero or negative size"),
    "negative height": ([bbox(10, 10, 10, -5)], None, "zero or negative size"),
    "far off the page": ([bbox(150, 10, 100, 10)], None, "runs off the 200x100 page by more than"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_groups_file_is_an_error_naming_file_and_problem(tmp_path, console, case):
    groups, raw, expected = BAD_INPUTS[case]
    root = tmp_path / "app"
    write_page(root, "good", "page_001", [bbox(0, 0, 10, 10)])
    run_export(root, tmp_path, console)  # an earlier, good export
    before = {p.name: p.read_bytes() for p in (tmp_path / "yolo" / "labels").iterdir()}

    write_page(root, "bad doc", "page_007", groups, raw_groups=raw)
    with pytest.raises(StageFailed, match="export: 1 error"):
        run_export(root, tmp_path, console)
    assert "bad doc/groups/page_007_groups.json" in console.text
    assert expected in console.text
    after = {p.name: p.read_bytes() for p in (tmp_path / "yolo" / "labels").iterdir()}
    assert after == before, "a failed export must leave the earlier output as it was"
    report = json.loads((tmp_path / "reports" / "export.json").read_text())
    assert report["problems"][0]["file"].endswith("page_007_groups.json")


def test_groups_file_without_its_image_is_an_error(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_003", [bbox(0, 0, 10, 10)], image=False)
    with pytest.raises(StageFailed):
        run_export(root, tmp_path, console)
    assert "doc/groups/page_003_groups.json: no page image pages/page_003.png" in console.text


def test_unreadable_image_is_an_error(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [bbox(0, 0, 10, 10)])
    (root / "documents" / "doc" / "pages" / "page_001.png").write_bytes(b"not a png at all")
    with pytest.raises(StageFailed):
        run_export(root, tmp_path, console)
    assert "doc/pages/page_001.png: cannot read the page image" in console.text


def test_small_overhang_is_clipped_with_a_warning(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [bbox(-2, 10, 102, 50)], size=(200, 100))
    run_export(root, tmp_path, console)
    assert "runs slightly off the 200x100 page; clipped" in console.text
    row = (tmp_path / "yolo" / "labels" / "doc__page_001.txt").read_text().split()
    assert row[1:] == ["0.250000", "0.350000", "0.500000", "0.500000"]


def test_duplicate_box_is_kept_once_with_a_warning_or_is_an_error(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [bbox(0, 0, 10, 10), bbox(0, 0, 10, 10)])
    run_export(root, tmp_path, console)
    assert "page_001_groups.json: group 1: duplicates group 0; kept once" in console.text
    assert len((tmp_path / "yolo" / "labels" / "doc__page_001.txt").read_text().splitlines()) == 1
    with pytest.raises(StageFailed):
        run_export(root, tmp_path, console, params_of("export", duplicate_boxes="error"))


def test_empty_page_is_a_counted_negative_and_unlabeled_pages_are_counted(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [])
    write_page(root, "doc", "page_002", [bbox(0, 0, 10, 10)])
    (root / "documents" / "doc" / "pages" / "page_003.png").write_bytes(
        (root / "documents" / "doc" / "pages" / "page_001.png").read_bytes())
    summary = run_export(root, tmp_path, console)
    assert summary["negative_pages"] == 1 and summary["unlabeled_pages"] == 1 and summary["pages"] == 2
    assert (tmp_path / "yolo" / "labels" / "doc__page_001.txt").read_text() == ""


def test_exif_rotation_swaps_the_frame_with_a_warning(tmp_path, console):
    from PIL import Image

    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [bbox(10, 10, 50, 150)], size=(200, 100))
    image_path = root / "documents" / "doc" / "pages" / "page_001.png"
    image = Image.new("RGB", (200, 100), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90°: displayed as 100x200
    image.save(image_path, exif=exif)
    run_export(root, tmp_path, console)
    assert "EXIF orientation 6" in console.text
    row = (tmp_path / "yolo" / "labels" / "doc__page_001.txt").read_text().split()
    assert row[3:] == ["0.500000", "0.750000"]  # normalised against 100x200


def test_class_mapping_from_a_group_field(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [bbox(0, 0, 10, 10, type="question"), bbox(20, 20, 10, 10, type="figure")])
    params = params_of("export", class_names=["Question_Block", "Figure"], class_field="type",
                          class_map={"question": "Question_Block", "figure": "Figure"})
    run_export(root, tmp_path, console, params)
    rows = (tmp_path / "yolo" / "labels" / "doc__page_001.txt").read_text().splitlines()
    classes = [line.split()[0] for line in rows]
    assert classes == ["0", "1"]
    write_page(root, "doc", "page_002", [bbox(0, 0, 10, 10, type="answer")])
    with pytest.raises(StageFailed):
        run_export(root, tmp_path, console, params)
    assert "type='answer' has no class" in console.text


def test_missing_dataset_root_says_what_to_do(tmp_path, console):
    with pytest.raises(UserError, match="no documents/ folder"):
        run_export(tmp_path / "nowhere", tmp_path, console)


def test_rerun_redoes_only_what_changed(tmp_path, console):
    root = tmp_path / "app"
    for page in ("page_001", "page_002", "page_003"):
        write_page(root, "doc", page, [bbox(10, 10, 50, 20)])
    run_export(root, tmp_path, console)
    assert "(6 files written" in console.text
    run_export(root, tmp_path, console)
    assert "(0 files written" in console.text

    write_page(root, "new doc", "page_001", [bbox(10, 10, 50, 20)])
    run_export(root, tmp_path, console)
    assert "(2 files written" in console.text

    # A same-size edit (x 10 -> 90) must be seen: the cache is per file, not summed sizes.
    groups = root / "documents" / "doc" / "groups" / "page_002_groups.json"
    groups.write_text(groups.read_text().replace('"x": 10', '"x": 90'))
    run_export(root, tmp_path, console)
    assert "(1 files written" in console.text
    assert (tmp_path / "yolo" / "labels" / "doc__page_002.txt").read_text().startswith("0 0.575000")

    groups.unlink()
    summary = run_export(root, tmp_path, console)
    assert summary["pages"] == 3 and summary["unlabeled_pages"] == 1
    assert not (tmp_path / "yolo" / "labels" / "doc__page_002.txt").exists()
    assert not (tmp_path / "yolo" / "images" / "doc__page_002.png").exists()


def test_changed_export_params_recompute_the_labels(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [bbox(10, 10, 50, 20, type="figure")])
    run_export(root, tmp_path, console)
    params = params_of("export", class_names=["Question_Block", "Figure"], class_field="type",
                          class_map={"figure": "Figure"})
    run_export(root, tmp_path, console, params)
    assert (tmp_path / "yolo" / "labels" / "doc__page_001.txt").read_text().startswith("1 ")
    # every page converted again, its image linked again: a link renamed over its twin is a no-op on POSIX,
    # which once left a `.{name}.tmp` beside every image (and validate refused them as images without labels)
    assert sorted(p.name for p in (tmp_path / "yolo" / "images").iterdir()) == ["doc__page_001.png"]


def test_warnings_of_unchanged_pages_are_still_reported(tmp_path, console):
    root = tmp_path / "app"
    write_page(root, "doc", "page_001", [bbox(0, 0, 10, 10), bbox(0, 0, 10, 10)])
    run_export(root, tmp_path, console)
    first = console.text.count("duplicates group 0")
    summary = run_export(root, tmp_path, console)
    assert console.text.count("duplicates group 0") == first + 1 and summary["warnings"] == 1


def test_an_interrupted_export_is_repaired_by_the_next_run(tmp_path, console, monkeypatch):
    """Files are written in place (no temp file per page); the manifest, written last, is what
    makes the next run redo every page the interrupted one was writing."""
    root = tmp_path / "app"
    groups = write_page(root, "doc", "page_001", [bbox(10, 10, 50, 20)])
    run_export(root, tmp_path, console)
    groups.write_text(groups.read_text().replace('"x": 10', '"x": 90'))

    def crash(text, target):
        target.write_bytes(text.encode()[:5])  # half a file, then the power goes
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_write_label", crash)
    with pytest.raises(KeyboardInterrupt):
        run_export(root, tmp_path, console)
    monkeypatch.undo()
    run_export(root, tmp_path, console)
    assert (tmp_path / "yolo" / "labels" / "doc__page_001.txt").read_text() == "0 0.575000 0.200000 0.250000 0.200000\n"


def test_worker_processes_give_the_same_export_and_problems(tmp_path, console, monkeypatch):
    from qblock.core import progress

    root = tmp_path / "app"
    for n in range(6):
        write_page(root, f"doc{n % 2}", f"page_{n:03d}", [bbox(10 + n, 10, 50, 20), bbox(0, 0, 201, 10)])
    serial = run_export(root, tmp_path / "serial", console)
    monkeypatch.setattr(progress, "PARALLEL_MIN_ITEMS", 2)
    parallel = run_export(root, tmp_path / "parallel", console)
    assert parallel == serial and serial["warnings"] == 6  # each page's overhang, from the workers too
    for name in ("labels", "images"):
        folder = tmp_path / "serial" / "yolo" / name
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == \
            {p.name: p.read_bytes() for p in (tmp_path / "parallel" / "yolo" / name).iterdir()}


def _collector_on(_item: int) -> bool:
    import gc

    return gc.isenabled()


def test_the_cycle_collector_is_paused_for_the_stage_only_and_on_in_its_workers(tmp_path, console, monkeypatch):
    """The stages pause Python's cycle collector for their bookkeeping (core/collector.py): it is on again
    after the stage, after a failed one too, and on in the worker processes that open the pages."""
    import gc

    from qblock.core import collector, progress

    write_page(tmp_path / "app", "doc", "page_001", [bbox(10, 10, 50, 20)])
    seen: list[bool] = []
    real_rows = export.page_rows
    monkeypatch.setattr(export, "page_rows", lambda *a: seen.append(gc.isenabled()) or real_rows(*a))
    run_export(tmp_path / "app", tmp_path, console)
    assert seen == [False] and gc.isenabled()
    (tmp_path / "app" / "documents" / "doc" / "groups" / "page_001_groups.json").write_text("{")
    with pytest.raises(StageFailed):
        run_export(tmp_path / "app", tmp_path, console)
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            pass
        assert not gc.isenabled()  # an inner block leaves it as it found it
        monkeypatch.setattr(progress, "PARALLEL_MIN_ITEMS", 2)
        assert progress.map_pages(_collector_on, list(range(8)), "test") == [True] * 8
    assert gc.isenabled()


def test_the_same_pages_export_byte_identical_on_another_machine(tmp_path, console, monkeypatch):
    """The export folder's hash goes into dvc.lock: file times (which differ per machine) must not be in it,
    or a laptop that pulled the desktop's commit would find its export changed, commit, and retrain for nothing."""
    import os
    import shutil

    laptop, desktop = tmp_path / "laptop", tmp_path / "desktop"
    for page in ("page_001", "page_002"):
        write_page(laptop / "app", "doc", page, [bbox(10, 10, 50, 20)])
    shutil.copytree(laptop / "app", desktop / "app")  # other mtimes, as `dvc pull` gives
    for path in (desktop / "app").rglob("*"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    exported = []
    for machine in (laptop, desktop):
        monkeypatch.chdir(machine)
        export.run(Path("app"), machine / "yolo", params_of("export"), machine / "export.json", console)
        exported.append({p.relative_to(machine / "yolo"): p.read_bytes() for p in (machine / "yolo").rglob("*")
                         if p.is_file()})
    assert exported[0] == exported[1]
    assert b"_stat" not in exported[0][Path("manifest.json")]
    monkeypatch.chdir(laptop)  # this machine's stats, kept beside the project, still make a rerun do nothing
    export.run(Path("app"), laptop / "yolo", params_of("export"), laptop / "export.json", console)
    last_run = console.text.split("export:")[-2:]
    assert "(0 files written" in "".join(last_run), last_run


def test_a_rerun_reads_again_only_the_documents_whose_files_changed(tmp_path, console, monkeypatch):
    """At 100,000 pages a re-run must not convert, or even list the records of, documents nobody touched:
    one whose files have the names, sizes and times they had is carried over whole."""
    from qblock.data import app_dataset

    root = tmp_path / "app"
    for document in ("algebra", "geometry", "calculus"):
        for page in ("page_001", "page_002"):
            write_page(root, document, page, [bbox(10, 10, 50, 20)])
    first = run_export(root, tmp_path, console)
    converted: list[str] = []
    real_convert = export.convert_page
    monkeypatch.setattr(export, "convert_page", lambda source, **kw: converted.append(source.key) or
                        real_convert(source, **kw))
    listed: list[str] = []
    real_sources = app_dataset.document_sources
    monkeypatch.setattr(export, "document_sources", lambda files: listed.append(files.name) or real_sources(files))

    assert run_export(root, tmp_path, console) == first and converted == listed == []
    groups = root / "documents" / "geometry" / "groups" / "page_002_groups.json"
    groups.write_text(groups.read_text().replace('"x": 10', '"x": 90'))  # same size, another time
    assert run_export(root, tmp_path, console) == first
    assert listed == ["geometry"] and converted == ["geometry__page_002"]
    assert (tmp_path / "yolo" / "labels" / "geometry__page_002.txt").read_text().startswith("0 0.575000")

    # a document removed in the app: its files and this machine's stats of it go
    import shutil

    shutil.rmtree(root / "documents" / "calculus")
    summary = run_export(root, tmp_path, console)
    assert summary["documents"] == 2 and summary["pages"] == 4
    assert not list((tmp_path / "yolo" / "labels").glob("calculus__*"))
    from qblock.data import yolo_folder

    stats = json.loads(yolo_folder.STATS.read_text())
    assert sorted(stats["documents"]) == ["algebra", "geometry"]
    assert yolo_folder.page_files(tmp_path / "yolo").path("algebra").is_file()  # a file of page stats per document
    assert not yolo_folder.page_files(tmp_path / "yolo").path("calculus").exists()


def test_a_file_removed_from_the_export_by_hand_comes_back(tmp_path, console):
    root = tmp_path / "app"
    for page in ("page_001", "page_002"):
        write_page(root, "doc", page, [bbox(10, 10, 50, 20)])
    run_export(root, tmp_path, console)
    label = tmp_path / "yolo" / "labels" / "doc__page_002.txt"
    image = tmp_path / "yolo" / "images" / "doc__page_001.png"
    text = label.read_text()
    label.unlink()
    image.unlink()
    run_export(root, tmp_path, console)
    assert label.read_text() == text and image.is_file()
    assert "(2 files written" in console.text.splitlines()[-1]


def test_a_new_document_folding_into_an_unchanged_one_is_refused(tmp_path, console):
    """`Algebra` exported last week, `algebra` added today: the old one is unchanged, yet the clash is named
    by file, as when both are new (on the Windows desktop they are one folder)."""
    root = tmp_path / "app"
    write_page(root, "Algebra", "page_001", [bbox(10, 10, 50, 20)])
    run_export(root, tmp_path, console)
    write_page(root, "algebra", "page_001", [bbox(10, 10, 50, 20)])
    with pytest.raises(StageFailed):
        run_export(root, tmp_path, console)
    assert "documents/algebra/groups/page_001_groups.json: differs from documents/Algebra/groups/page_001_groups.json" \
        in " ".join(console.text.split())


def test_a_file_is_written_whole_or_not_at_all(tmp_path):
    from qblock.core import files

    target = tmp_path / "deep" / "state.json"
    files.write_text(target, "first")
    with pytest.raises(RuntimeError), files.written(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the power goes")
    assert target.read_text() == "first" and sorted(p.name for p in target.parent.iterdir()) == ["state.json"]
    files.write_bytes(target, b"second")
    assert target.read_bytes() == b"second"

from __future__ import annotations

import json

import pytest
from tests.conftest import params_of

from qblock.core.errors import StageFailed
from qblock.data.image_checks import image_problem
from qblock.labeling.demo_data import write_demo_dataset
from qblock.stages import export, split, validate


@pytest.fixture
def exported(tmp_path, console):
    """A tiny demo collection run through export and split."""
    write_demo_dataset(tmp_path / "app", documents=3, pages=2, seed=1)
    export.run(tmp_path / "app", tmp_path / "yolo", params_of("export"), tmp_path / "reports" / "export.json", console)
    split.run(tmp_path / "yolo", tmp_path / "split", params_of("split"), console)
    return tmp_path


def run_validate(root, console):
    return validate.run(root / "yolo", root / "split", root / "reports", 4, console, root / "cache.json")


def test_clean_data_passes_with_statistics_and_a_picture(exported, console):
    stats = run_validate(exported, console)
    assert stats["pages"] == 6 and stats["documents"] == 3 and stats["boxes"] > 6
    assert stats["train_pages"] + stats["val_pages"] == 6
    assert json.loads((exported / "reports" / "data_stats.json").read_text()) == stats
    from PIL import Image

    with Image.open(exported / "reports" / "samples.png") as sheet:
        assert sheet.width > sheet.height  # pages side by side


def first_image(root):
    return sorted((root / "yolo" / "images").iterdir())[0]


def test_truncated_image_stops_the_pipeline(exported, console):
    image = first_image(exported)
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert f"{image}: corrupt or truncated image" in console.text
    assert report_ok(exported) is False


def report_ok(root) -> bool:
    return json.loads((root / "reports" / "validate.json").read_text())["ok"]


def test_a_clean_image_that_later_breaks_is_caught_on_the_next_run(exported, console):
    run_validate(exported, console)  # caches every image as clean
    image = first_image(exported)
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    image.write_bytes(bytes(data))
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert f"{image}: corrupt or truncated image" in console.text


def test_truncated_jpeg_is_an_error_where_ultralytics_would_resave_it(exported, console):
    from PIL import Image

    image = first_image(exported)
    jpeg = image.with_suffix(".jpg")
    with Image.open(image) as page:
        page.convert("RGB").save(jpeg, quality=80)
    image.unlink()
    jpeg.write_bytes(jpeg.read_bytes()[:-100])
    for split_file in (exported / "split").glob("*.txt"):
        split_file.write_text(split_file.read_text().replace(image.name, jpeg.name))
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert f"{jpeg}: truncated JPEG (no end-of-image marker)" in console.text


@pytest.mark.parametrize(("row", "message"), [
    ("3 0.5 0.5 0.1 0.1", "class id 3 is outside 0..0"),
    ("0 0.5 0.5 0.1", "expected 5 fields"),
    ("0 1.5 0.5 0.1 0.1", "coordinates must lie in 0..1"),
    ("0 0.95 0.5 0.2 0.1", "box runs off the image"),
    ("0 0.5 0.5 0 0.1", "width and height must be positive"),
    ("x 0.5 0.5 0.1 0.1", "is not an integer"),
    ("0 nan 0.5 0.1 0.1", "coordinates must lie in 0..1"),
])
def test_bad_label_rows_are_errors_naming_file_and_line(exported, console, row, message):
    label = sorted((exported / "yolo" / "labels").iterdir())[0]
    label.write_text(label.read_text() + row + "\n")
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert str(label) in console.text and message in console.text


def test_duplicate_rows_are_an_error(exported, console):
    label = sorted((exported / "yolo" / "labels").iterdir())[0]
    first_line = label.read_text().splitlines()[0]
    label.write_text(label.read_text() + first_line + "\n")
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert "duplicates line 1" in console.text


def test_images_and_labels_must_pair_up(exported, console):
    label = sorted((exported / "yolo" / "labels").iterdir())[0]
    label.unlink()
    (exported / "yolo" / "labels" / "stray.txt").write_text("")
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert "image without a label file" in console.text
    assert "stray.txt: label file without an image" in console.text


def test_files_the_manifest_does_not_name_are_checked_too(exported, console):
    """A page copied into the export by hand, image and label: checked as any other (a bad row is named),
    and refused for being in no split list; the pages the manifest names are still found by stem."""
    images, labels = exported / "yolo" / "images", exported / "yolo" / "labels"
    source = sorted(images.iterdir())[0]
    (images / "extra__page.png").write_bytes(source.read_bytes())
    (labels / "extra__page.txt").write_text("0 0.5 0.5 0.1 1.5\n")
    with pytest.raises(StageFailed, match="validate: 2 error"):
        run_validate(exported, console)
    assert f"{labels / 'extra__page.txt'}: line 1: " in console.text
    assert "extra__page.png: is in no split list" in console.text
    (labels / "extra__page.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(StageFailed, match="validate: 1 error"):  # checked again: its files are of no document
        run_validate(exported, console)


def test_every_image_must_be_in_a_split(exported, console):
    val = exported / "split" / "val.txt"
    dropped = val.read_text().splitlines()[0]
    val.write_text("".join(line + "\n" for line in val.read_text().splitlines()[1:]) or "")
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert f"{dropped.removeprefix('images/')}: is in no split list" in console.text


def test_a_label_edited_after_a_clean_run_is_checked_again(exported, console):
    run_validate(exported, console)  # caches every label as clean
    label = sorted((exported / "yolo" / "labels").iterdir())[0]
    label.write_text(label.read_text().replace("0 ", "7 ", 1))  # same size, bad class id
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert "class id 7 is outside 0..0" in console.text


def test_png_check_catches_every_flipped_byte_and_truncation(tmp_path):
    import random

    from PIL import Image

    path = tmp_path / "page.png"
    Image.new("L", (120, 80), 200).save(path)
    data = path.read_bytes()
    assert image_problem(path) == (None, (120, 80))
    rng = random.Random(0)
    for position in rng.sample(range(len(data)), 40) + [len(data) - 1]:
        broken = bytearray(data)
        broken[position] ^= 0x5A
        path.write_bytes(bytes(broken))
        assert image_problem(path)[0], f"flipped byte {position} went unnoticed"
    for cut in (len(data) - 1, len(data) - 12, len(data) // 2, 40, 20):
        path.write_bytes(data[:cut])
        assert "corrupt or truncated" in image_problem(path)[0]


def test_worker_processes_find_the_same_problems(exported, console, monkeypatch):
    from qblock.core import progress

    label = sorted((exported / "yolo" / "labels").iterdir())[0]
    label.write_text(label.read_text() + "0 2 0.5 0.1 0.1\n")
    monkeypatch.setattr(progress, "PARALLEL_MIN_ITEMS", 2)
    with pytest.raises(StageFailed, match="validate: 1 error"):
        run_validate(exported, console)
    assert f"{label}: line" in console.text and "coordinates must lie in 0..1" in console.text


def _split_of(root) -> dict[str, str]:
    return {entry.rpartition("/")[2]: split for split in ("train", "val")
            for entry in (root / "split" / f"{split}.txt").read_text().split()}


def test_the_same_page_in_train_and_in_val_is_an_error_naming_both(exported, console):
    """A page imported twice (once per document) lands in both splits: val would measure a page the
    model trained on. Caught on a cached re-run too; a blank page repeated is only a warning."""
    import shutil

    run_validate(exported, console)  # every image cached as clean, with its hash
    where = _split_of(exported)
    in_train = next(n for n, s in sorted(where.items()) if s == "train")
    in_val = next(n for n, s in sorted(where.items()) if s == "val")
    images = exported / "yolo" / "images"
    (images / in_val).unlink()
    shutil.copyfile(images / in_train, images / in_val)  # the val page is now the train page's bytes
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    said = " ".join(console.text.split())
    assert f"{images / in_val}: the same image as {in_train} (train), and this one is in val" in said
    assert report_ok(exported) is False

    for name in (in_train, in_val):  # now a blank page with no questions, in both splits
        (exported / "yolo" / "labels" / f"{name.rsplit('.', 1)[0]}.txt").write_text("")
    run_validate(exported, console)
    problems = json.loads((exported / "reports" / "validate.json").read_text())["problems"]
    assert [p["severity"] for p in problems if "the same image as" in p["message"]] == ["warning"]


def test_a_rerun_checks_again_only_the_documents_whose_files_changed(exported, console, monkeypatch):
    """A document whose exported files have the names, sizes and times they had is carried over whole; in one
    that changed, labels are read again and only the image whose file changed is read again."""
    first = run_validate(exported, console)
    asked: list[tuple] = []
    real_check = validate.check_page
    monkeypatch.setattr(validate, "check_page", lambda job: asked.append(job[1:3]) or real_check(job))
    assert run_validate(exported, console) == first and asked == []

    labels = sorted((exported / "yolo" / "labels").iterdir())
    document = labels[0].name.split("__")[0]
    labels[0].write_text(labels[0].read_text())  # the same rows, another time
    assert run_validate(exported, console) == first
    in_document = sorted(p.name for p in labels if p.name.startswith(document + "__"))
    assert sorted(label for image, label in asked) == in_document and {image for image, _ in asked} == {None}

    asked.clear()
    image = sorted((exported / "yolo" / "images").iterdir())[-1]
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a page of another document breaks: found, though its labels are as they were
    image.write_bytes(bytes(data))
    with pytest.raises(StageFailed):
        run_validate(exported, console)
    assert [i for i, _ in asked if i] == [image.name] and f"{image}: corrupt or truncated image" in console.text


def test_a_document_carried_over_from_the_cache_says_its_warnings_again(exported, console):
    """The report is the same from a cold cache and a warm one (a warning is not lost on the second run)."""
    label = sorted((exported / "yolo" / "labels").iterdir())[0]
    rows = label.read_text().splitlines()
    first = rows[0].split()
    inner = f"0 {first[1]} {first[2]} {float(first[3]) / 2:.6f} {float(first[4]) / 2:.6f}"
    label.write_text("\n".join([*rows, inner]) + "\n")  # a box inside another of its class: a warning
    reports = []
    for _ in range(2):
        run_validate(exported, console)
        reports.append(json.loads((exported / "reports" / "validate.json").read_text())["problems"])
    assert reports[0] == reports[1] and any("lies inside" in p["message"] for p in reports[1])


def test_boxes_of_one_class_nested_inside_each_other_are_a_warning(tmp_path):
    """HiLEx's item, question and choices all mapped to one class: each question sits inside its item."""
    from qblock.data.label_checks import check_labels
    from qblock.data.problems import ProblemLog

    label = tmp_path / "page.txt"
    label.write_text("0 0.5 0.3 0.8 0.2\n"      # the whole item
                     "0 0.5 0.25 0.7 0.05\n"    # its question, inside it
                     "0 0.5 0.7 0.8 0.2\n"      # the next item, beside nothing
                     "1 0.5 0.7 0.3 0.05\n")    # another class inside it: not a nesting of one class
    log = ProblemLog()
    assert check_labels(label, 2, log) is not None  # a warning, not an error: the rows are kept
    assert [(p.severity, p.message.split(",")[0]) for p in log.problems] == [
        ("warning", "line 2 lies inside line 1")]

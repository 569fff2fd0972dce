"""`qblock import` on public exports fetched into `tests/data/` (each folder's SOURCE.md says where from and
under which licence), so the tests hold cases of their own beside `../shared/real_exports/`. Boxes are
compared with the export's own numbers, worked out here independently of the importer."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from tests.conftest import RecordingConsole, params_of
from tests.test_imports import app_boxes, close

DATA = Path(__file__).parent / "data"


def test_a_label_studio_export_with_two_annotators_choices_and_image_names_without_an_extension(tmp_path):
    """label-studio-converter's export: task 1 was labeled by two people (the later one is imported, and
    the other counted), `choices` results share a rectangle's id (left out, counted), and its images are
    `/image1`, `/image2`: files with no extension, found under the folder given."""
    from qblock.imports.importer import run_import

    export = DATA / "label_studio_converter" / "data.json"
    images = tmp_path / "images"
    images.mkdir()
    for name in ("image1", "image2"):  # stand-ins of the size the export records; PNG bytes, no extension
        Image.new("L", (2800, 2800), 255).save(images / name, format="PNG")
    console = RecordingConsole()
    classes = params_of("export", class_map={"parasites": "Question_Block", "white": "Question_Block"})
    run_import("label-studio", export, images, tmp_path / "data" / "dataset_root", classes, "slides", False, False,
               console)

    said = " ".join(console.text.split())
    assert "1 other annotation(s) of the same tasks left out" in said
    assert "1 result(s) that are not rectangles" in said
    tasks = json.loads(export.read_text())
    truth = {}
    for task in tasks:  # the latest annotation's rectangles, in pixels of the 2800 x 2800 image
        latest = max(task["annotations"], key=lambda a: a["updated_at"])
        truth[task["data"]["image"].strip("/")] = [
            (r["value"]["x"] * 28, r["value"]["y"] * 28, r["value"]["width"] * 28, r["value"]["height"] * 28)
            for r in latest["result"] if r["type"] == "rectanglelabels"]
    imported = app_boxes(tmp_path)
    assert sorted(imported) == ["slides/image1", "slides/image2"]
    for key, boxes in imported.items():
        assert close(boxes, truth[key.split("/")[1]]), key
    for page in (tmp_path / "data" / "dataset_root" / "documents" / "slides" / "pages").iterdir():
        with Image.open(page) as opened:  # a page image the pipeline can read: an image suffix, the same pixels
            assert page.suffix == ".png" and opened.size == (2800, 2800)


def test_a_roboflow_export_of_augmented_copies_only_imports_one_page_per_source_and_says_which(tmp_path):
    """Roboflow Universe's "Books" export: 9 flipped, rotated and sheared copies of each of two source
    images, all in train, classes named after books. One page per source, in a document named after
    it; which copy was taken is said; a re-import of the same export from its zip writes nothing."""
    import shutil

    from qblock.imports.importer import run_import

    export = DATA / "roboflow_books"
    root = tmp_path / "data" / "dataset_root"
    classes = params_of("export", class_map={"bongkoch": "Question_Block"})
    console = RecordingConsole()
    run_import("roboflow", export, None, root, classes, None, False, False, console)
    said = " ".join(console.text.split())
    assert "16 augmented or duplicate copies of 2 source page(s) skipped" in said
    taken = {name: said.split(f"{name} <- ", 1)[1].split(".jpg", 1)[0] + ".jpg" for name in ("01Logo", "logoVol-6")}
    assert all(copy.startswith(("01Logo_png" if name == "01Logo" else "logoVol-6_jpg") + ".rf.")
               for name, copy in taken.items()), taken
    imported = app_boxes(tmp_path)
    assert sorted(imported) == ["01Logo/01Logo", "logoVol/logoVol-6"]
    for key, boxes in imported.items():  # the taken copy's own label, in pixels of its 640 x 640 image
        copy = export / "train" / "images" / taken[key.split("/")[1]]
        with Image.open(copy) as image:
            width, height = image.size
        rows = [[float(v) for v in line.split()[1:]]
                for line in (export / "train" / "labels" / f"{copy.stem}.txt").read_text().splitlines() if line.strip()]
        truth = [((x - w / 2) * width, (y - h / 2) * height, w * width, h * height) for x, y, w, h in rows]
        assert close(boxes, truth), key

    zipped = Path(shutil.make_archive(str(tmp_path / "books"), "zip", export))
    again = RecordingConsole()
    run_import("roboflow", zipped, None, root, classes, None, False, False, again)
    assert "nothing to write; the app's folder already has this export" in " ".join(again.text.split())
    assert app_boxes(tmp_path) == imported

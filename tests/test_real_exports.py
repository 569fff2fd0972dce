"""`qblock import` on real exports from public projects (`../shared/real_exports/`, SOURCES.md there
lists each one's quirks). They are read where they lie, never copied into the project; where an
export ships without its images (Label Studio JSON names them, a few COCO exports were copied
without theirs), the test makes stand-in images of the sizes the export records, in tmp_path.

Each imported box is compared, in pixels, with the export's own numbers, worked out here
independently of the importer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml
from PIL import Image, ImageDraw
from tests.conftest import REPO, RecordingConsole, params_of
from tests.test_imports import app_boxes, through_the_pipeline

from qblock.core.errors import UserError

REAL = REPO.parent / "shared" / "real_exports"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"no real exports at {REAL}")


def run(kind: str, path: Path, project: Path, classes: list[str], images: Path | None = None,
        dry_run: bool = False) -> RecordingConsole:
    """Import into ``project``/data/dataset_root with every one of ``classes`` mapped to Question_Block."""
    from qblock.imports.importer import run_import

    console = RecordingConsole()
    export = params_of("export", class_map={name: "Question_Block" for name in classes})
    run_import(kind, path, images, project / "data" / "dataset_root", export, None, dry_run, False, console)
    return console


def close(a, b, tolerance: float = 0.5) -> bool:
    """The same boxes within ``tolerance`` pixels, matched one to one (many share an edge up to float noise,
    so no sort order pairs them reliably)."""
    left = list(b)
    for box in a:
        match = next((other for other in left if all(abs(p - q) <= tolerance for p, q in zip(box, other, strict=True))),
                     None)
        if match is None:
            return False
        left.remove(match)
    return not left


def said(console: RecordingConsole) -> str:
    return " ".join(console.text.split())


def nothing_written(project: Path) -> bool:
    return not (project / "data" / "dataset_root").exists()


def yolo_truth(label: Path, size: tuple[int, int]) -> list[tuple[float, ...]]:
    w, h = size
    rows = [[float(v) for v in line.split()[1:]] for line in label.read_text().splitlines() if line.strip()]
    return [((x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h) for x, y, bw, bh in rows]


def stand_in(path: Path, size: tuple[int, int], seed: int) -> None:
    """An image of ``size`` that differs from every other stand-in (a mark at a place of its own)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).rectangle((seed % max(1, size[0] - 2), 0, seed % max(1, size[0] - 2) + 1, 1), fill=0)
    image.save(path)


# ---------------------------------------------------------------- Roboflow YOLO

def test_a_real_roboflow_yolov5_export_one_copy_per_source_page(tmp_path):
    """far_west: 640x640 (Stretch), 3 augmented copies per train source, each with its own box count."""
    export = REAL / "roboflow_yolov8" / "Aadi0032007__far_west_dataset_v1"
    console = run("roboflow", export, tmp_path, ["milk-jug"])
    assert "4 augmented or duplicate copies of 14 source page(s) skipped" in said(console)
    assert "Resize to 640x640 (Stretch)" in said(console)
    imported = app_boxes(tmp_path)
    assert len(imported) == 14
    assert {key.split("/")[1] for key in imported} >= {"dfghujm", "IMG_2444", "IMG_2451", "IMG_E2456"}
    # each source page once, with one of its copies' boxes (the one with the most of them: 5 for dfghujm)
    for key, boxes in imported.items():
        page = key.split("/")[1]
        copies = sorted(export.glob(f"*/labels/{page}_jpg.rf.*.txt"))
        assert copies, key
        assert any(close(boxes, yolo_truth(label, (640, 640))) for label in copies), key
    assert len(imported["dfghujm/dfghujm"]) == 5
    pipeline = through_the_pipeline(tmp_path)
    assert all(close(pipeline[key], boxes) for key, boxes in imported.items())


def test_a_real_roboflow_yolov8_export_with_a_user_edited_data_yaml(tmp_path):
    """rubyrizz: no valid split, an absolute `path:`, `val:` pointing at train, labels without a final
    newline, a source name without a `_jpg` marker (`10.rf.…`)."""
    export = REAL / "roboflow_yolov8" / "tanmay-sketch__rubyrizz-data"
    console = run("roboflow", export, tmp_path, ["Blue", "Green", "Orange", "Red", "White", "Yellow"])
    assert "classes from data.yaml: Blue, Green, Orange, Red, White, Yellow" in said(console)
    imported = app_boxes(tmp_path)
    pages = sorted(key.split("/")[1] for key in imported)
    assert "10" in pages and len(pages) == len(set(pages)) == 8
    label = sorted((export / "data").glob("*/labels/10.rf.*.txt"))
    assert any(close(boxes, yolo_truth(copy, (640, 640))) for copy in label
               for key, boxes in imported.items() if key.endswith("/10"))


def test_an_unmapped_class_is_named_once_with_its_count_and_nothing_is_written(tmp_path):
    export = REAL / "roboflow_yolov8" / "tanmay-sketch__rubyrizz-data"
    with pytest.raises(UserError) as error:
        run("roboflow", export, tmp_path, ["Blue", "Green"])
    message = str(error.value)
    assert "4 class name(s)" in message and "'Orange'" in message and "'Yellow'" in message
    assert "export.class_map" in message and "first tanmay-sketch__rubyrizz-data: " in message
    assert nothing_written(tmp_path)


# ---------------------------------------------------------------- Roboflow COCO

def test_a_real_roboflow_coco_export_of_full_size_photos(tmp_path):
    """madam2: a 2026 export, no resize (3000x4000 and 4000x3000), `extra.name`, ids from 1."""
    export = REAL / "roboflow_coco" / "Emadamx__ACV-HW4-pen-detection" / "annotated" / "madam2"
    data = json.loads((export / "test" / "_annotations.coco.json").read_text())
    run("roboflow", export, tmp_path, ["pen"])
    imported = app_boxes(tmp_path)
    assert len(imported) == len(data["images"]) == 2
    for image in data["images"]:
        page = Path(image["extra"]["name"]).stem
        truth = [tuple(a["bbox"]) for a in data["annotations"] if a["image_id"] == image["id"]]
        (key,) = [k for k in imported if k.endswith(f"/{page}")]
        assert close(imported[key], truth), key
        document = key.split("/")[0]
        with Image.open(tmp_path / "data" / "dataset_root" / "documents" / document / "pages" / f"{page}.png") as png:
            assert png.size == (image["width"], image["height"])


def test_a_real_coco_export_with_string_sizes_and_its_images_beside_it(tmp_path):
    """dprawal: bbox widths and heights as JSON strings, 20-character ids instead of 32 hex, polygons
    in `segmentation`, the images flat beside the JSON (stand-ins here: the real ones are not copied)."""
    source = REAL / "roboflow_coco" / "Emadamx__ACV-HW4-pen-detection" / "annotated" / "dprawal"
    export = tmp_path / "dprawal"
    export.mkdir()
    shutil.copy(source / "_annotations.coco.json", export)
    data = json.loads((export / "_annotations.coco.json").read_text())
    for seed, image in enumerate(data["images"]):
        stand_in(export / image["file_name"], (image["width"] // 8, image["height"] // 8), seed)
    project = tmp_path / "project"
    run("roboflow", export, project, sorted({c["name"] for c in data["categories"]}))
    imported = app_boxes(project)
    assert len(imported) == len(data["images"])
    for image in data["images"]:  # the stand-ins are 1/8 the listed size: boxes scale with them
        truth = [tuple(float(v) / 8 for v in a["bbox"]) for a in data["annotations"] if a["image_id"] == image["id"]]
        page = Path(image["extra"]["name"]).stem if "name" in image.get("extra", {}) else None
        matches = [boxes for key, boxes in imported.items() if page and key.endswith(f"/{page}")]
        assert len(matches) == 1 and close(matches[0], truth, tolerance=0.2), image["file_name"]


def test_a_coco_export_missing_most_of_its_images_says_how_many_and_writes_nothing(tmp_path):
    """Cones-and-Cells as copied: 35 images listed, 4 there."""
    export = REAL / "roboflow_coco" / "Lakemonsters2635__Cones-and-Cells"
    with pytest.raises(UserError) as error:
        run("roboflow", export, tmp_path, ["Power_Cell", "trafficcone"])
    assert "31 of the 35 images it lists are not beside it" in str(error.value)
    assert "test/_annotations.coco.json" in str(error.value)
    assert nothing_written(tmp_path)


def test_the_cones_export_with_its_missing_images_made_up_imports_with_half_pixel_boxes(tmp_path):
    """Category 0 is Roboflow's unused parent; the boxes use half-pixel floats."""
    export = tmp_path / "cones"
    shutil.copytree(REAL / "roboflow_coco" / "Lakemonsters2635__Cones-and-Cells", export)
    data = json.loads((export / "test" / "_annotations.coco.json").read_text())
    for seed, image in enumerate(data["images"]):
        if not (export / "test" / image["file_name"]).exists():
            stand_in(export / "test" / image["file_name"], (image["width"], image["height"]), seed)
    project = tmp_path / "project"
    run("roboflow", export, project, ["Power_Cell", "trafficcone"])
    imported = app_boxes(project)
    assert len(imported) == len(data["images"]) == 35
    assert sum(len(b) for b in imported.values()) == len(data["annotations"]) == 98
    by_name = {Path(i["file_name"]).name: i for i in data["images"]}
    for name in ["176_jpg", "510_jpg", "DSC02155_jpg"]:
        (image,) = [i for n, i in by_name.items() if n.startswith(name + ".rf.")]
        truth = [tuple(a["bbox"]) for a in data["annotations"] if a["image_id"] == image["id"]]
        matches = [b for k, b in imported.items() if k.endswith("/" + name[: -len("_jpg")])]
        assert len(matches) == 1 and close(matches[0], truth), name


# ---------------------------------------------------------------- Label Studio YOLO

def test_a_real_label_studio_yolo_export_with_upload_ids_and_a_chinese_class(tmp_path):
    export = next((REAL / "label_studio_yolo" / "liyu473__trainyolo").iterdir())
    console = run("label-studio", export, tmp_path, ["检查点"])
    assert "classes from classes.txt: 检查点" in said(console)
    imported = app_boxes(tmp_path)
    assert len(imported) == 6
    pages = {key.split("/")[1] for key in imported}
    # one original under two upload ids: two different pictures, both kept under their full names
    assert {"5d0d9ace-A3_Crop", "a0e9634e-A3_Crop", "E2_Crop", "E3_Crop"} <= pages
    for label in sorted((export / "labels").glob("*.txt")):
        image = export / "images" / f"{label.stem}.png"
        with Image.open(image) as opened:
            truth = yolo_truth(label, opened.size)
        (key,) = [k for k in imported if k.endswith("/" + label.stem) or k.endswith("/" + label.stem[9:])]
        assert close(imported[key], truth), key


def test_a_real_label_studio_yolo_folder_moved_into_splits_by_its_user(tmp_path):
    """neyro-train: the user's own dataset.yaml (absolute Windows path, comments) over split folders."""
    export = REAL / "label_studio_yolo" / "ordenmeny__neyro-train" / "all_dataset"
    run("label-studio", export, tmp_path, ["yellow", "green", "blue", "red", "pink", "purple"])
    imported = app_boxes(tmp_path)
    assert len(imported) == 2
    for image in sorted((export / "test" / "images").iterdir()):
        with Image.open(image) as opened:
            truth = yolo_truth(export / "test" / "labels" / f"{image.stem}.txt", opened.size)
        (key,) = [k for k in imported if k.endswith("/" + image.stem.split("-", 1)[1])]
        assert close(imported[key], truth), key


def test_classes_txt_and_a_dataset_yaml_in_another_order_is_an_error_naming_both(tmp_path):
    """neyro-train's two class lists (Label Studio's and the user's) side by side."""
    source = REAL / "label_studio_yolo" / "ordenmeny__neyro-train"
    export = tmp_path / "export"
    shutil.copytree(source / "all_dataset", export)
    shutil.copy(next(source.glob("project-*")) / "classes.txt", export)
    with pytest.raises(UserError) as error:
        run("label-studio", export, tmp_path / "project", ["yellow", "green", "blue", "red", "pink", "purple"])
    assert "dataset.yaml" in str(error.value) and "classes.txt" in str(error.value)
    assert nothing_written(tmp_path / "project")


# ---------------------------------------------------------------- Label Studio JSON

def image_path(reference: str) -> str:
    """Where Label Studio's reference points, relative to the folder the images came from (worked
    out here on its own: local-files `d=` with Windows backslashes, uploads' 8-character prefix, URLs)."""
    parsed = urlparse(reference)
    if "local-files" in parsed.path:
        return parse_qs(parsed.query)["d"][0].replace("\\", "/")
    name = unquote(parsed.path).rsplit("/", 1)[-1]
    return name.split("-", 1)[1] if parsed.path.startswith("/data/upload/") else name


def label_studio_images(export: Path, folder: Path) -> dict[object, dict]:
    """Stand-in images for a Label Studio JSON export, of each task's original size; task id -> task."""
    tasks = json.loads(export.read_text(encoding="utf-8"))
    for seed, task in enumerate(tasks):
        reference = next(v for k, v in task["data"].items() if k in ("image", "image_url"))
        sizes = [(r["original_width"], r["original_height"]) for a in task.get("annotations") or []
                 for r in a.get("result") or [] if "original_width" in r]
        path = folder / image_path(reference)
        if not path.exists():
            stand_in(path, sizes[0] if sizes else (64, 48), seed)
    return {task["id"]: task for task in tasks}


def label_studio_truth(task: dict) -> list[tuple[float, ...]]:
    """The boxes of a task's latest, not cancelled annotation, in pixels of its original size."""
    annotation = max((a for a in task["annotations"] if not a.get("was_cancelled")), key=lambda a: a["updated_at"])
    return [(r["value"]["x"] / 100 * r["original_width"], r["value"]["y"] / 100 * r["original_height"],
             r["value"]["width"] / 100 * r["original_width"], r["value"]["height"] / 100 * r["original_height"])
            for r in annotation["result"] if r.get("type") == "rectanglelabels"]


def test_a_real_label_studio_export_of_uploads_with_relations_and_34_classes(tmp_path):
    """ahmadparizaad: minified, `/data/upload/8/{8 hex}-{name}`, 2101 boxes, 129 relations, two page
    sizes, `predictions` as a list of integer ids."""
    export = next((REAL / "label_studio").glob("ahmadparizaad__*.json"))
    tasks = label_studio_images(export, tmp_path / "images")
    classes = sorted({label for task in tasks.values() for a in task["annotations"] for r in a["result"]
                      for label in r.get("value", {}).get("rectanglelabels", [])})
    assert len(classes) == 34
    console = run("label-studio", export, tmp_path / "project", classes, images=tmp_path / "images")
    assert "129 result(s) that are not rectangles" in said(console)
    imported = app_boxes(tmp_path / "project")
    assert len(imported) == len(tasks) == 28 and sum(len(b) for b in imported.values()) == 2101
    for task in tasks.values():
        page = Path(image_path(task["data"]["image"])).stem
        (key,) = [k for k in imported if k.endswith("/" + page)]
        assert close(imported[key], label_studio_truth(task)), key
    pipeline = through_the_pipeline(tmp_path / "project")
    assert all(close(pipeline[key], boxes) for key, boxes in imported.items())


def test_a_real_label_studio_export_of_local_files_stops_at_its_rotated_box(tmp_path):
    """Salmon-Angle: CRLF, `/data/local-files/?d=fish%20original%5Cseq_0001%5C…` (a Windows path), choices
    beside the rectangles, task 4481 with a box rotated by 1.05 degrees, task 4796 with no box."""
    export = next((REAL / "label_studio").glob("DalexQ__*.json"))
    label_studio_images(export, tmp_path / "images")
    assert (tmp_path / "images" / "fish original" / "seq_0001").is_dir()
    with pytest.raises(UserError) as error:
        run("label-studio", export, tmp_path / "project", ["fish"], images=tmp_path / "images")
    assert "task 4481" in str(error.value) and "rotated" in str(error.value)
    assert nothing_written(tmp_path / "project")

    # without the rotated box: every other task imports, the one with no rectangle as a page with no questions
    tasks = json.loads(export.read_text(encoding="utf-8"))
    for task in tasks:
        for annotation in task["annotations"]:
            annotation["result"] = [r for r in annotation["result"] if r.get("value", {}).get("rotation", 0) == 0]
    straight = tmp_path / "straight.json"
    straight.write_text(json.dumps(tasks), encoding="utf-8")
    labels = sorted({label for task in tasks for a in task["annotations"] for r in a["result"]
                     for label in r.get("value", {}).get("rectanglelabels", [])})
    console = run("label-studio", straight, tmp_path / "project", labels, images=tmp_path / "images")
    assert "result(s) that are not rectangles" in said(console)
    imported = app_boxes(tmp_path / "project")
    assert len(imported) == len(tasks) == 30
    by_id = {task["id"]: task for task in tasks}
    empty = [k for k, b in imported.items() if not b]
    assert len(empty) >= 1 and not label_studio_truth(by_id[4796])
    for task in tasks:
        page = Path(image_path(task["data"]["image"])).stem
        (key,) = [k for k in imported if k.endswith("/" + page)]
        assert close(imported[key], label_studio_truth(task)), key


def test_a_real_label_studio_export_of_rectangles_and_labels_names_the_box_without_a_label(tmp_path):
    """fatura: `<Rectangle>` plus `<Labels>`, two results per box sharing an id; in task 420 one
    rectangle has no label."""
    export = next((REAL / "label_studio").glob("hasanyilmazgursoy__*.json"))
    tasks = label_studio_images(export, tmp_path / "images")
    labels = sorted({label for task in tasks.values() for a in task["annotations"] for r in a["result"]
                     for label in r.get("value", {}).get("labels", [])})
    with pytest.raises(UserError) as error:
        run("label-studio", export, tmp_path / "project", labels, images=tmp_path / "images")
    assert "task 420" in str(error.value) and "iAiOWuFP3s" in str(error.value)
    assert nothing_written(tmp_path / "project")

    fixed = json.loads(export.read_text(encoding="utf-8"))
    for task in fixed:
        for annotation in task["annotations"]:
            annotation["result"] = [r for r in annotation["result"] if r["id"] != "iAiOWuFP3s"]
    (tmp_path / "fixed.json").write_text(json.dumps(fixed), encoding="utf-8")
    run("label-studio", tmp_path / "fixed.json", tmp_path / "project", labels, images=tmp_path / "images")
    imported = app_boxes(tmp_path / "project")
    assert len(imported) == 10
    for task in fixed:
        page = Path(image_path(task["data"]["image"])).stem
        geometry = {r["id"]: r for a in task["annotations"] for r in a["result"] if r["type"] == "labels"}
        truth = [(r["value"]["x"] / 100 * r["original_width"], r["value"]["y"] / 100 * r["original_height"],
                  r["value"]["width"] / 100 * r["original_width"], r["value"]["height"] / 100 * r["original_height"])
                 for r in geometry.values()]
        (key,) = [k for k in imported if k.endswith("/" + page)]
        assert close(imported[key], truth), key


def test_a_real_label_studio_export_of_urls_with_an_image_in_two_tasks(tmp_path):
    """smakam: `data.image_url` with remote URLs, an empty result on task 106, and tasks 101 and 107
    naming the same image."""
    export = next((REAL / "label_studio").glob("smakam__*.json"))
    label_studio_images(export, tmp_path / "images")
    with pytest.raises(UserError) as error:
        run("label-studio", export, tmp_path / "project", ["Face", "Occluded"], images=tmp_path / "images")
    assert "task 107" in str(error.value) and "task 101" in str(error.value)
    assert nothing_written(tmp_path / "project")


def test_an_image_of_another_shape_than_the_one_labeled_is_refused(tmp_path):
    export = next((REAL / "label_studio").glob("ahmadparizaad__*.json"))
    tasks = label_studio_images(export, tmp_path / "images")
    first = next(iter(tasks.values()))
    wrong = tmp_path / "images" / image_path(first["data"]["image"])
    stand_in(wrong, (300, 300), 0)  # the labeled page is 4963x3509 or 3509x2480
    classes = sorted({label for task in tasks.values() for a in task["annotations"] for r in a["result"]
                      for label in r.get("value", {}).get("rectanglelabels", [])})
    with pytest.raises(UserError) as error:
        run("label-studio", export, tmp_path / "project", classes, images=tmp_path / "images")
    assert f"task {first['id']}" in str(error.value) and "300x300" in str(error.value)
    assert nothing_written(tmp_path / "project")


def test_hilex_pages_become_their_exam_papers_and_unwanted_classes_are_dropped(tmp_path):
    """HiLEx (tests/data/hilex_subset): names with two upload ids, a paper on all three sides of its own
    split, six nested classes. The whole item is a workbook's question; the rest is dropped and counted."""
    from qblock.config.compose import compose_params

    data = compose_params(REPO)
    data["export"]["class_map"] = {"Question_Answer_Block": "Question_Block", "Question_Block": None,
                                   "Answer_Block": None, "Question_Paper_Area": None, "Description": None,
                                   "Instruction": None}
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    source = REPO / "tests" / "data" / "hilex_subset"
    done = subprocess.run([sys.executable, "-m", "qblock", "import", "roboflow", str(source)], cwd=project,
                          capture_output=True, text=True, timeout=120)
    said = " ".join(done.stdout.split())
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    documents = sorted(p.name for p in (project / "data" / "dataset_root" / "documents").iterdir())
    assert documents == ["GATE_CS2023", "Kaplan-GMAT-Practice-Questions", "sat-practice-test-9"]
    assert "dropped" in said and "of class 'Question_Paper_Area'" in said
    kept = sum(1 for p in source.rglob("labels/*.txt") for line in p.read_text().splitlines()
               if line.split()[:1] == ["3"])  # Question_Answer_Block
    groups = [json.loads(p.read_text()) for p in (project / "data" / "dataset_root").rglob("*_groups.json")]
    assert sum(len(g["groups"]) for g in groups) == kept > 0

"""`qblock import`: Roboflow (YOLO, COCO, zip) and Label Studio (JSON, YOLO) exports, built here
by hand, become pages of the app's folder whose boxes match the drawn ones to half a pixel, through
export, split and validate too; re-imports change nothing; bad input stops before any write."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw
from rich.console import Console
from tests.conftest import REPO

HEX = "0123456789abcdef"


def rf_name(source: str, rng: random.Random, ext: str = "jpg") -> str:
    """Roboflow's name for a copy of ``source`` (``algebra_p001.png`` -> ``algebra_p001_png.rf.<32 hex>.jpg``)."""
    stem, _, suffix = source.rpartition(".")
    return f"{stem}_{suffix}.rf.{''.join(rng.choice(HEX) for _ in range(32))}.{ext}"


def draw(path: Path, size: tuple[int, int], boxes: list[tuple[float, float, float, float]]) -> None:
    """A page with a dark block where each box is (so it is a real image, and a distinct one)."""
    image = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(image)
    for x, y, w, h in boxes:
        pen.rectangle((x + 2, y + 2, x + w - 3, y + h - 3), outline=(30, 30, 30), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def yolo_rows(size, boxes, cls=0) -> str:
    w, h = size
    return "".join(f"{cls} {(x + bw / 2) / w:.8f} {(y + bh / 2) / h:.8f} {bw / w:.8f} {bh / h:.8f}\n"
                   for x, y, bw, bh in boxes)


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder whose params map the exports' class names to Question_Block."""
    from qblock.config.compose import compose_params

    data = compose_params(REPO)
    data["export"]["class_map"] = {"question": "Question_Block", "질문": "Question_Block"}
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "params.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return tmp_path / "project"


def qb(project: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "qblock", *args], cwd=project, capture_output=True, text=True,
                            timeout=120)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def app_boxes(project: Path) -> dict[str, list[tuple[float, ...]]]:
    """doc/page -> the groups' pixel boxes, as the app's folder holds them."""
    found = {}
    for groups in sorted((project / "data" / "dataset_root").glob("documents/*/groups/*_groups.json")):
        data = json.loads(groups.read_text(encoding="utf-8"))
        key = f"{groups.parent.parent.name}/{groups.name[: -len('_groups.json')]}"
        boxes = [g["combinedBbox"] for g in data["groups"]]
        found[key] = sorted((b["x"], b["y"], b["width"], b["height"]) for b in boxes)
    return found


def close(a, b, tolerance=0.5) -> bool:
    return len(a) == len(b) and all(abs(p - q) <= tolerance for ba, bb in zip(sorted(a), sorted(b), strict=True)
                                    for p, q in zip(ba, bb, strict=True))


def through_the_pipeline(project: Path) -> dict[str, list[tuple[float, ...]]]:
    """export, split and validate on the imported pages; their YOLO labels back in pixels, per page."""
    from tests.conftest import params_of

    from qblock.data.labels import parse_clean
    from qblock.data.yolo_folder import read_manifest
    from qblock.stages import export, split, validate

    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    work = project / "pipeline"
    export.run(project / "data" / "dataset_root", work / "yolo", params_of("export"), work / "export.json", quiet)
    split.run(work / "yolo", work / "split", params_of("split"), quiet)
    validate.run(work / "yolo", work / "split", work / "reports", 0, quiet, work / "validated.json")  # raises on errors
    found = {}
    for record in read_manifest(work / "yolo").pages:
        labels = (work / "yolo" / "labels" / record.label_name).read_text(encoding="utf-8")
        boxes = [row.to_pixels(record.width, record.height) for row in parse_clean(labels)]
        found[f"{record.document}/{record.page}"] = sorted((x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes)
    return found


# ---------------------------------------------------------------- Roboflow

@pytest.fixture
def roboflow_export(tmp_path) -> tuple[Path, dict[str, list]]:
    """A Roboflow YOLOv8 export: 4 source pages of 2 workbooks, 640x640 (resized), the first page in
    train with 3 augmented copies (different boxes each), the others once in train, valid or test."""
    rng = random.Random(1)
    root = tmp_path / "roboflow"
    root.mkdir()
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 1\n"
                                    "names: ['question']\n\nroboflow:\n  workspace: me\n  project: workbooks\n"
                                    "  version: 2\n  license: CC BY 4.0\n  url: https://universe.roboflow.com/x")
    (root / "README.roboflow.txt").write_text(
        "Pre-processing:\n* Auto-orientation of pixel data\n* Resize to 640x640 (Stretch)\n\n"
        "Augmentations:\n* 50% horizontal flip\n")
    truth = {}
    pages = [("algebra_p001.png", "train", 3), ("algebra_p002.png", "valid", 1), ("geometry_p001.png", "train", 1),
             ("geometry_p002.png", "test", 1)]
    for source, split, copies in pages:
        count = 3 if copies > 1 else rng.randint(1, 4)  # augmented copies (flipped, cropped) have fewer boxes
        boxes = [(40.5 + 10 * i, 30.25 + 150 * i, 500.0 - 7 * i, 120.75) for i in range(count)]
        truth[source.rsplit(".", 1)[0]] = boxes
        for copy in range(copies):
            name = rf_name(source, rng)
            shown = boxes if copy == 0 else [(640 - x - w, y, w, h) for x, y, w, h in boxes][: copy]  # flipped
            draw(root / split / "images" / name, (640, 640), shown)
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            (root / split / "labels" / f"{Path(name).stem}.txt").write_text(yolo_rows((640, 640), shown))
    return root, truth


def test_a_roboflow_export_becomes_pages_of_its_workbooks_one_copy_per_page(project, roboflow_export):
    export_dir, truth = roboflow_export
    result = qb(project, "import", "roboflow", str(export_dir))
    assert result.returncode == 0, result.stdout
    said = " ".join(result.stdout.split())
    assert "4 page(s)" in said and "2 augmented or duplicate copies of 4 source page(s) skipped" in said
    assert "Resize to 640x640 (Stretch)" in said and "added 4" in said
    # the three copies of algebra_p001 are all in train: which was taken, and the README's transforms, are said
    assert "1 source page(s) have only augmented copies, all in train (Roboflow's README lists: 50% horizontal " \
           "flip); the copy with the most boxes was taken" in said and "algebra_p001 <- algebra_p001_png.rf." in said
    imported = app_boxes(project)
    assert sorted(imported) == ["algebra/algebra_p001", "algebra/algebra_p002", "geometry/geometry_p001",
                                "geometry/geometry_p002"]
    for key, boxes in imported.items():
        assert close(boxes, truth[key.split("/")[1]]), key
    with Image.open(project / "data" / "dataset_root" / "documents" / "algebra" / "pages" / "algebra_p001.png") as page:
        assert page.size == (640, 640) and page.format == "PNG"
    for key, boxes in through_the_pipeline(project).items():
        assert close(boxes, truth[key.split("/")[1]]), key

    again = qb(project, "import", "roboflow", str(export_dir))
    assert "unchanged 4" in again.stdout and "nothing to write" in again.stdout


def test_the_zip_of_an_export_imports_the_same_pages(project, roboflow_export, tmp_path):
    export_dir, truth = roboflow_export
    archive = tmp_path / "workbooks.v2i.yolov8.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in export_dir.rglob("*"):
            zipped.write(path, path.relative_to(export_dir).as_posix())
    assert qb(project, "import", "roboflow", str(archive)).returncode == 0
    assert all(close(b, truth[k.split("/")[1]]) for k, b in app_boxes(project).items()) and len(app_boxes(project)) == 4


def test_a_roboflow_coco_export_with_string_numbers_and_an_unused_parent_category(project, tmp_path):
    rng = random.Random(2)
    split = tmp_path / "coco" / "train"
    images, annotations, truth = [], [], {}
    for index, source in enumerate(["algebra_p001.png", "algebra_p002.png"]):
        name = rf_name(source, rng)
        boxes = [(12.5, 20.0 + 200 * i, 380.25, 150.5) for i in range(index + 1)]
        truth[source[:-4]] = boxes
        draw(split / name, (416, 416), boxes)
        images.append({"id": index, "file_name": name, "width": 416, "height": 416, "extra": {"name": source}})
        for x, y, w, h in boxes:
            annotations.append({"id": len(annotations), "image_id": index, "category_id": 1, "iscrowd": 0,
                                "bbox": [x, y, f"{w:.4f}", f"{h:.4f}"], "area": w * h, "segmentation": []})
    (split / "_annotations.coco.json").write_text(json.dumps({
        "info": {"version": "dataset"}, "images": images, "annotations": annotations,
        "categories": [{"id": 0, "name": "workbooks", "supercategory": "none"},
                       {"id": 1, "name": "question", "supercategory": "workbooks"}]}))
    result = qb(project, "import", "roboflow", str(tmp_path / "coco"))
    assert result.returncode == 0, result.stdout
    imported = app_boxes(project)
    assert sorted(imported) == ["algebra/algebra_p001", "algebra/algebra_p002"]
    assert all(close(b, truth[k.split("/")[1]]) for k, b in imported.items())


def test_demo_pages_round_trip_through_a_roboflow_style_export(project, tmp_path):
    """Demo pages -> a Roboflow YOLO export written here -> `qblock import roboflow` -> the same groups."""
    from qblock.labeling.demo_data import write_demo_dataset

    demo = tmp_path / "demo"
    write_demo_dataset(demo, documents=2, pages=2, seed=3)
    rng = random.Random(3)
    export_dir = tmp_path / "export"
    (export_dir).mkdir()
    (export_dir / "data.yaml").write_text("nc: 1\nnames: ['question']\n")
    original = {}
    for index, groups_file in enumerate(sorted(demo.glob("documents/*/groups/*_groups.json"))):
        data = json.loads(groups_file.read_text(encoding="utf-8"))
        workbook = f"book{groups_file.parent.parent.name.encode().hex()[:6]}"
        source = f"{workbook}_{data['page']}.png"
        with Image.open(groups_file.parent.parent / "pages" / f"{data['page']}.png") as page:
            size = page.size
            name = rf_name(source, rng, "png")
            split = ("train", "valid", "test")[index % 3]
            (export_dir / split / "images").mkdir(parents=True, exist_ok=True)
            page.save(export_dir / split / "images" / name)
        boxes = [(b["x"], b["y"], b["width"], b["height"]) for b in (g["combinedBbox"] for g in data["groups"])]
        (export_dir / split / "labels").mkdir(parents=True, exist_ok=True)
        (export_dir / split / "labels" / f"{Path(name).stem}.txt").write_text(yolo_rows(size, boxes))
        original[f"{workbook}/{workbook}_{data['page']}"] = boxes
    assert qb(project, "import", "roboflow", str(export_dir)).returncode == 0
    imported = app_boxes(project)
    assert sorted(imported) == sorted(original)
    assert all(close(imported[k], original[k]) for k in original)


# ---------------------------------------------------------------- Label Studio

def ls_result(box_id, x, y, w, h, size, label="question", rotation=0.0, split_pair=False):
    value = {"x": 100 * x / size[0], "y": 100 * y / size[1], "width": 100 * w / size[0], "height": 100 * h / size[1],
             "rotation": rotation}
    common = {"id": box_id, "to_name": "image", "original_width": size[0], "original_height": size[1],
              "image_rotation": 0, "origin": "manual"}
    if split_pair:  # <Rectangle> + <Labels>: two results sharing one id
        return [common | {"from_name": "bbox", "type": "rectangle", "value": value},
                common | {"from_name": "label", "type": "labels", "value": value | {"labels": [label]}}]
    return [common | {"from_name": "label", "type": "rectanglelabels", "value": value | {"rectanglelabels": [label]}}]


@pytest.fixture
def label_studio_export(tmp_path):
    """Tasks with an uploaded path, a local-files path (Windows backslashes), two annotations (one
    ground truth), a cancelled one, an unlabeled task, an empty annotation, Rectangle+Labels pairs."""
    images = tmp_path / "scans"
    size = (800, 1100)
    truth = {
        "algebra_p001": [(50.0, 60.5, 600.25, 200.0), (50.0, 300.0, 600.0, 180.75)],
        "algebra_p002": [(70.5, 90.0, 500.0, 400.0)],
        "algebra_p003": [(44.0, 44.0, 300.0, 300.0)],
        "geometry_p001": [(10.0, 20.0, 700.0, 90.0)],
        "geometry_p002": [],
    }
    draw(images / "algebra_p001.png", size, truth["algebra_p001"])
    draw(images / "week 2" / "algebra_p002.png", size, truth["algebra_p002"])
    for page in ("algebra_p003", "geometry_p001", "geometry_p002", "geometry_p003"):
        draw(images / f"{page}.png", size, truth.get(page, [(1, 1, 5, 5)]))

    def results(boxes, pair=False):
        return [r for i, b in enumerate(boxes) for r in ls_result(f"r{i}", *b, size, split_pair=pair)]

    tasks = [
        {"id": 1, "data": {"image": "/data/upload/3/1a2b3c4d-algebra_p001.png"},
         "annotations": [{"id": 11, "result": results(truth["algebra_p001"]), "was_cancelled": False,
                          "ground_truth": False, "updated_at": "2025-01-01T10:00:00Z"}], "predictions": [7]},
        {"id": 2, "data": {"image": "/data/local-files/?d=scans%5Cweek%202%5Calgebra_p002.png"},
         "annotations": [{"id": 21, "result": results(truth["algebra_p002"]), "ground_truth": True,
                          "updated_at": "2025-01-01T10:00:00Z"},
                         {"id": 22, "result": results([(1, 1, 9, 9)]), "ground_truth": False,
                          "updated_at": "2025-02-01T10:00:00Z"}]},
        {"id": 3, "data": {"image_url": "https://example.invalid/pages/algebra_p003.png"},
         "annotations": [{"id": 31, "result": results([(1, 1, 9, 9)]), "was_cancelled": True,
                          "updated_at": "2025-03-01T10:00:00Z"},
                         {"id": 32, "result": results(truth["algebra_p003"]) + [
                             {"id": "c", "type": "choices", "value": {"choices": ["easy"]}, "to_name": "image"}],
                          "updated_at": "2025-01-01T10:00:00Z"}]},
        {"id": 4, "data": {"image": "/data/upload/3/9f8e7d6c-geometry_p001.png"},
         "annotations": [{"id": 41, "result": results(truth["geometry_p001"], pair=True)}]},
        {"id": 5, "data": {"image": "/data/upload/3/aaaaaaaa-geometry_p002.png"},
         "annotations": [{"id": 51, "result": []}]},
        {"id": 6, "data": {"image": "/data/upload/3/bbbbbbbb-geometry_p003.png"}, "annotations": []},
    ]
    export = tmp_path / "project-3-at-2025-03-01.json"
    export.write_text(json.dumps(tasks).replace("\n", "\r\n"), encoding="utf-8")
    return export, images, truth


def test_a_label_studio_export_becomes_pages_with_the_chosen_annotations(project, label_studio_export):
    export, images, truth = label_studio_export
    result = qb(project, "import", "label-studio", str(export), "--images", str(images))
    assert result.returncode == 0, result.stdout
    said = " ".join(result.stdout.split())
    assert "5 page(s)" in said and "1 task(s) without an annotation" in said and "added 5" in said
    assert "1 other annotation(s)" in said and "1 result(s) that are not rectangles" in said
    imported = app_boxes(project)
    assert sorted(imported) == [*(f"algebra/algebra_p00{i}" for i in (1, 2, 3)), "geometry/geometry_p001",
                                "geometry/geometry_p002"]
    for key, boxes in imported.items():
        assert close(boxes, truth[key.split("/")[1]]), key
    pipeline = through_the_pipeline(project)
    assert pipeline["geometry/geometry_p002"] == []  # an empty annotation: a page with no questions
    for key, boxes in pipeline.items():
        assert close(boxes, truth[key.split("/")[1]]), key


def test_a_label_studio_yolo_export_with_upload_ids_and_a_korean_class(project, tmp_path):
    root = tmp_path / "project-6-at-2025"
    (root / "classes.txt").parent.mkdir(parents=True)
    (root / "classes.txt").write_text("질문\n", encoding="utf-8")
    truth = {}
    for index, name in enumerate(["1f2e3d4c-quiz_3.png", "5a6b7c8d-quiz_4.png"]):
        boxes = [(20.0 + index, 30.0, 200.5, 80.25)]
        truth[name[9:-4]] = boxes
        draw(root / "images" / name, (300, 400), boxes)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{name[:-4]}.txt").write_text(yolo_rows((300, 400), boxes))
    assert qb(project, "import", "label-studio", str(root)).returncode == 0
    imported = app_boxes(project)
    assert sorted(imported) == ["quiz/quiz_3", "quiz/quiz_4"]
    assert all(close(b, truth[k.split("/")[1]]) for k, b in imported.items())


# ---------------------------------------------------------------- again, and conflicts

def test_a_newer_export_reports_added_changed_removed_and_never_overwrites_a_persons_page(
        project, label_studio_export):
    export, images, truth = label_studio_export
    assert qb(project, "import", "label-studio", str(export), "--images", str(images)).returncode == 0
    root = project / "data" / "dataset_root" / "documents" / "algebra"
    before = {p: p.stat().st_mtime_ns for p in root.parent.rglob("*") if p.is_file()}
    again = qb(project, "import", "label-studio", str(export), "--images", str(images))
    assert "unchanged 5" in again.stdout and {p: p.stat().st_mtime_ns for p in before} == before

    tasks = json.loads(export.read_text(encoding="utf-8"))
    tasks[0]["annotations"][0]["result"] = tasks[0]["annotations"][0]["result"][:1]  # p001 loses a box
    tasks[4]["annotations"] = []  # geometry_p002: not labeled any more
    tasks[5]["annotations"] = [{"id": 61, "result": ls_result("n", 5, 5, 100, 100, (800, 1100))}]  # p003 labeled
    newer = export.with_name("project-3-at-2025-04-01.json")
    newer.write_text(json.dumps(tasks), encoding="utf-8")
    person = root / "groups" / "algebra_p003_groups.json"  # a person fixed p003 in the app
    person.write_text(json.dumps({"groups": [{"combinedBbox": {"x": 40, "y": 40, "width": 310, "height": 310}}]}))

    dry = qb(project, "import", "label-studio", str(newer), "--images", str(images), "--dry-run")
    assert "dry run, nothing written" in dry.stdout
    refused = qb(project, "import", "label-studio", str(newer), "--images", str(images))
    said = " ".join(refused.stdout.split())
    assert refused.returncode == 1 and "algebra/algebra_p003" in said and "--replace" in said
    assert "Nothing was written" in said
    assert not (root.parent / "geometry" / "groups" / "geometry_p003_groups.json").exists()
    assert "added 1, changed 1, unchanged 2, removed from the export 1" in said
    assert json.loads(person.read_text())["groups"][0]["combinedBbox"]["width"] == 310

    replaced = qb(project, "import", "label-studio", str(newer), "--images", str(images), "--replace")
    assert replaced.returncode == 0 and "3 page(s) written" in replaced.stdout  # added, changed, replaced
    assert close(app_boxes(project)["algebra/algebra_p003"], truth["algebra_p003"])
    assert len(app_boxes(project)["algebra/algebra_p001"]) == 1


# ---------------------------------------------------------------- bad input

def assert_refused(project: Path, result: subprocess.CompletedProcess, *words: str) -> None:
    said = " ".join(result.stdout.split())
    assert result.returncode == 1, said
    for word in words:
        assert word in said, (word, said)
    assert not (project / "data").exists()  # nothing written


def test_a_rotated_box_is_refused_naming_the_task(project, label_studio_export):
    export, images, _ = label_studio_export
    tasks = json.loads(export.read_text(encoding="utf-8"))
    tasks[3]["annotations"][0]["result"] = ls_result("tilted", 10, 10, 100, 50, (800, 1100), rotation=1.05)
    export.write_text(json.dumps(tasks), encoding="utf-8")
    result = qb(project, "import", "label-studio", str(export), "--images", str(images))
    assert_refused(project, result, "task 4", "rotated by 1.05 degrees")


@pytest.mark.parametrize("damage, words", [
    (lambda t: t.append(dict(t[0], id=99)), ["task 99", "also", "task 1"]),  # one image, two tasks
    (lambda t: t[0]["annotations"][0]["result"][0]["value"].update(x=120.0), ["task 1", "0..100"]),
    (lambda t: t[0].update(data={"image": "/data/upload/3/12345678-nowhere.png"}),
     ["task 1", "nowhere.png", "not found"]),
    (lambda t: t[1]["annotations"][0]["result"][0]["value"].update(rectanglelabels=["answer"]), ["task 2", "'answer'",
                                                                                                 "class_map"]),
])
def test_bad_label_studio_input_is_named_and_nothing_is_written(project, label_studio_export, damage, words):
    export, images, _ = label_studio_export
    tasks = json.loads(export.read_text(encoding="utf-8"))
    damage(tasks)
    export.write_text(json.dumps(tasks), encoding="utf-8")
    assert_refused(project, qb(project, "import", "label-studio", str(export), "--images", str(images)),
                   export.name, *words)


def test_malformed_json_and_a_missing_images_folder(project, label_studio_export):
    export, images, _ = label_studio_export
    assert_refused(project, qb(project, "import", "label-studio", str(export)), "--images DIR")
    export.write_text('[{"id": 1, "data": ', encoding="utf-8")
    assert_refused(project, qb(project, "import", "label-studio", str(export), "--images", str(images)),
                   export.name, "malformed JSON", "line 1")


@pytest.mark.parametrize("damage, words", [
    (lambda r: (r / "data.yaml").write_text("names: [question\n"), ["data.yaml", "malformed YAML"]),
    (lambda r: (r / "data.yaml").write_text("nc: 2\nnames: ['question']\n"), ["data.yaml", "nc is 2"]),
    (lambda r: next((r / "valid" / "labels").iterdir()).write_text("0 0.5 0.5 0.2\n"), ["valid/labels/", "line 1",
                                                                                         "expected 5 fields"]),
    (lambda r: next((r / "test" / "labels").iterdir()).write_text("0 0.5 0.5 0.2 0.1\n0 1.5 0.5 0.2 0.1\n"),
     ["test/labels/", "line 2", "0..1"]),
    (lambda r: next((r / "test" / "labels").iterdir()).write_text("3 0.5 0.5 0.2 0.1\n"), ["class id 3"]),
    (lambda r: next((r / "valid" / "images").iterdir()).write_bytes(b"\xff\xd8 not a jpeg"), ["valid/images/",
                                                                                              "cannot open"]),
])
def test_bad_roboflow_input_is_named_and_nothing_is_written(project, roboflow_export, damage, words):
    export_dir, _ = roboflow_export
    damage(export_dir)
    assert_refused(project, qb(project, "import", "roboflow", str(export_dir)), *words)


def test_paths_in_an_export_never_leave_the_apps_folder(project, roboflow_export, tmp_path):
    export_dir, _ = roboflow_export
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("data.yaml", "names: ['question']\n")
        zipped.writestr("../../outside.txt", "x")
    assert_refused(project, qb(project, "import", "roboflow", str(archive)), "outside the export's folder")
    assert not (tmp_path.parent / "outside.txt").exists()

    odd = next((export_dir / "valid" / "images").iterdir())
    odd.rename(odd.with_name("..C:..evil_p007.jpg"))
    next((export_dir / "valid" / "labels").iterdir()).rename(export_dir / "valid" / "labels" / "..C:..evil_p007.txt")
    assert qb(project, "import", "roboflow", str(export_dir)).returncode == 0
    app = (project / "data" / "dataset_root").resolve()
    written = [p.resolve() for p in app.rglob("*") if p.is_file()]
    assert len(written) == 8 and all(p.is_relative_to(app / "documents") for p in written)


def _ultralytics_export(root: Path, pages: dict, rows=yolo_rows) -> None:
    """ultralytics' own layout: images/{train,val} beside labels/{train,val}, names in data.yaml."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names: [question]\n")
    for name, (split, boxes) in pages.items():
        draw(root / "images" / split / f"{name}.png", (400, 300), boxes or [])
        if boxes is not None:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{name}.txt").write_text(rows((400, 300), boxes))


def test_the_ultralytics_layout_images_train_val_beside_labels_train_val(project, tmp_path):
    export = tmp_path / "ul"
    _ultralytics_export(export, {"algebra_p001": ("train", [(20, 30, 200, 80)]),
                                 "algebra_p002": ("val", [(40, 50, 150, 90), (40, 180, 300, 60)])})
    done = qb(project, "import", "roboflow", str(export))
    assert done.returncode == 0, done.stderr
    boxes = app_boxes(project)
    assert close(boxes["algebra/algebra_p001"], [(20, 30, 200, 80)])
    assert close(boxes["algebra/algebra_p002"], [(40, 50, 150, 90), (40, 180, 300, 60)])


def test_polygon_rows_become_the_box_around_them_and_every_one_is_named(project, tmp_path):
    def polygons(size, boxes):  # each box as a four-point polygon, as a segmentation export writes it
        w, h = size
        return "".join("0 " + " ".join(f"{px / w:.6f} {py / h:.6f}" for px, py in
                                       ((x, y), (x + bw, y), (x + bw, y + bh), (x, y + bh))) + "\n"
                       for x, y, bw, bh in boxes)

    export = tmp_path / "poly"
    _ultralytics_export(export, {"geo_p001": ("train", [(20, 30, 200, 80), (30, 150, 100, 100)]),
                                 "geo_p002": ("val", [(10, 10, 300, 200)])}, rows=polygons)
    done = qb(project, "import", "roboflow", str(export))
    said = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stderr
    assert "3 polygon row(s) read as the box around their points" in said
    assert "labels/train/geo_p001.txt line 2" in said and "labels/val/geo_p002.txt line 1" in said
    assert close(app_boxes(project)["geo/geo_p001"], [(20, 30, 200, 80), (30, 150, 100, 100)])


def test_a_missing_label_file_is_named_and_never_empties_a_page_that_has_boxes(project, tmp_path):
    export = tmp_path / "first"
    _ultralytics_export(export, {"calc_p001": ("train", [(20, 30, 200, 80)]), "calc_p002": ("train", [(5, 5, 50, 50)])})
    assert qb(project, "import", "roboflow", str(export)).returncode == 0
    before = app_boxes(project)
    (export / "labels" / "train" / "calc_p001.txt").unlink()  # a later export lost one label file
    done = qb(project, "import", "roboflow", str(export))
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1
    assert "1 image(s) have no label file" in said and "labels/train/calc_p001.txt" in said
    assert "have boxes in" in said and "calc/calc_p001" in said and "--allow-empty" in said
    assert app_boxes(project) == before  # nothing written
    assert qb(project, "import", "roboflow", str(export), "--allow-empty").returncode == 0
    assert app_boxes(project)["calc/calc_p001"] == []


def test_an_export_with_no_boxes_at_all_is_an_error(project, tmp_path):
    export = tmp_path / "bare"
    _ultralytics_export(export, {"x_p001": ("train", None), "x_p002": ("val", None)})
    done = qb(project, "import", "roboflow", str(export))
    assert done.returncode == 1 and "not one box in this export" in done.stdout + done.stderr
    assert not (project / "data" / "dataset_root").exists()


def test_roboflow_coco_copies_of_one_source_fold_into_one_page_across_splits(project, tmp_path):
    """Roboflow COCO with extra.name: three augmented copies of 1038.jpg in train and one in valid are
    one page (the valid copy, un-augmented), named 1038 as the YOLO path names it, never by its hash."""
    rng = random.Random(4)
    boxes = [(12.0, 20.0, 300.0, 120.0)]
    for split, copies in (("train", 3), ("valid", 1)):
        folder = tmp_path / "coco" / split
        images, annotations = [], []
        for index in range(copies):
            name = rf_name("1038.jpg", rng)
            draw(folder / name, (416, 416), [(b[0] + index, *b[1:]) for b in boxes] if split == "train" else boxes)
            images.append({"id": index, "file_name": name, "width": 416, "height": 416,
                           "extra": {"name": "1038.jpg"}})
            annotations += [{"id": len(annotations), "image_id": index, "category_id": 1, "bbox": list(b)}
                            for b in boxes]
        (folder / "_annotations.coco.json").write_text(json.dumps({
            "images": images, "annotations": annotations, "categories": [{"id": 1, "name": "question"}]}))
    result = qb(project, "import", "roboflow", str(tmp_path / "coco"), "--into", "workbook")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 augmented or duplicate copies of 1 source page(s) skipped" in " ".join(result.stdout.split())
    assert list(app_boxes(project)) == ["workbook/1038"]


def test_the_same_pages_imported_again_from_a_zip_are_recognised_by_their_bytes(project, tmp_path):
    """A folder export, then its zip under another name: the zip's document name would differ (pages
    named by bare numbers take the export's name), so without a look at the bytes the same pages
    would land twice, and split could put one copy in train and the other in val."""
    export = tmp_path / "workbook_2024"
    _ultralytics_export(export, {"001": ("train", [(20, 30, 200, 80)]), "002": ("val", [(10, 10, 100, 100)])})
    assert qb(project, "import", "roboflow", str(export)).returncode == 0
    first = app_boxes(project)
    archive = tmp_path / "download (1).zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in export.rglob("*"):
            zipped.write(path, path.relative_to(export).as_posix())
    done = qb(project, "import", "roboflow", str(archive))
    said = " ".join(done.stdout.split())
    assert done.returncode == 0, done.stderr
    assert "unchanged 2" in said and "under another name" not in said  # the same pages, where they are
    assert app_boxes(project) == first  # one document, as before


def test_an_unchanged_reimport_reads_no_image_and_a_changed_image_is_read_again(project, tmp_path, monkeypatch):
    """An unchanged re-import neither encodes a page nor hashes an image again (the digests of the files
    it read last time are kept by path, size and modification time); an image whose file changed is read."""
    import hashlib

    from qblock.config.schema import load_params
    from qblock.imports import pages
    from qblock.imports.importer import run_import

    export = tmp_path / "geo"
    _ultralytics_export(export, {f"geo_p{i:03d}": ("train", [(20 + 9 * i, 30, 200, 80)]) for i in range(1, 6)})
    assert qb(project, "import", "roboflow", str(export)).returncode == 0
    cached = json.loads((project / ".qblock" / "cache" / "import-digests.json").read_text(encoding="utf-8"))
    images = sorted(p for p in export.rglob("*") if p.suffix in (".png", ".jpg"))
    assert {str(p.resolve()): hashlib.sha256(p.read_bytes()).hexdigest() for p in images} \
        == {path: entry[2] for path, entry in cached["files"].items()}

    def no_encoding(*_):
        raise AssertionError("an unchanged page was decoded and encoded again")

    hashed: list[int] = []
    real_sha256 = hashlib.sha256

    def counted_sha256(data=b""):
        hashed.append(len(data))
        return real_sha256(data)

    monkeypatch.chdir(project)
    encode = pages._png_bytes
    monkeypatch.setattr(pages, "_png_bytes", no_encoding)
    monkeypatch.setattr(pages.hashlib, "sha256", counted_sha256)
    params = load_params(project)
    plan = run_import("roboflow", export, None, project / "data" / "dataset_root", params.export, None, False,
                      False, Console(quiet=True))
    assert len(plan.unchanged) == 5 and not plan.added and not plan.changed
    assert hashed == []  # not one image read for its digest

    draw(images[0], Image.open(images[0]).size, [(5, 5, 60, 40)])  # another picture under the same name
    monkeypatch.setattr(pages, "_png_bytes", encode)  # a changed source is compared with the page it wrote
    plan = run_import("roboflow", export, None, project / "data" / "dataset_root", params.export, None, True,
                      False, Console(quiet=True))  # a dry run: nothing encoded
    assert len(hashed) == 1 and len(plan.unchanged) == 4  # that one image read again, and not unchanged


@pytest.mark.parametrize(("name", "document"), [
    ("vlcsnap-00211", "vlcsnap"), ("workshop-3", "workshop"), ("setup_12", "setup"),  # a p ending the name stays
    ("algebra_p012", "algebra"), ("algebra-13", "algebra"), ("algebra page 3", "algebra"), ("algebra12", "algebra"),
    ("UPSC_418", "UPSC"), ("1", "the export"), ("page_3", "the export"),
])
def test_a_page_number_and_its_marker_come_off_the_workbooks_name(name, document):
    from qblock.imports.pages import document_of

    assert document_of(name, "the export") == document


@pytest.mark.parametrize(("file_name", "source"), [
    ("0078ccf0-UPSC_418_jpg.rf.0123456789abcdef0123.jpg", "UPSC_418"),  # through Label Studio, then Roboflow
    ("0078ccf0-1a2b3c4d-GRE_12_png.rf.0123456789abcdef0123.jpg", "GRE_12"),  # uploaded twice
    ("rgb_0000_png_jpg.rf.0123456789abcdef0123.jpg", "rgb_0000"),  # a re-uploaded Universe set
    ("scan.v2_png.rf.0123456789abcdef0123.jpg", "scan.v2"),
])
def test_a_roboflow_copys_source_loses_every_upload_id_and_extension_marker(file_name, source):
    from qblock.imports.yolo_export import source_of

    assert source_of(file_name) == (source, True)


def test_a_class_mapped_to_null_is_dropped_and_counted(project, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["export"]["class_map"] |= {"answer": None}
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    export = tmp_path / "ul"
    _ultralytics_export(export, {"algebra_p001": ("train", [(20, 30, 200, 80), (20, 150, 200, 60)])},
                        rows=lambda size, boxes: yolo_rows(size, boxes[:1]) + yolo_rows(size, boxes[1:], cls=1))
    (export / "data.yaml").write_text("names: [question, answer]\n")
    done = qb(project, "import", "roboflow", str(export))
    assert done.returncode == 0, done.stdout
    assert "dropped 1 box of class 'answer' (export.class_map: answer: null)" in " ".join(done.stdout.split())
    assert close(app_boxes(project)["algebra/algebra_p001"], [(20, 30, 200, 80)])


def test_the_class_suggestion_lists_every_class_of_the_export(project, tmp_path):
    export = tmp_path / "ul"
    names = ["Question_Answer_Block", "Answer_Block", "Question_Paper_Area", "Figure", "Table"]
    _ultralytics_export(export, {"algebra_p001": ("train", [(20, 30 + 40 * i, 200, 30) for i in range(5)])},
                        rows=lambda size, boxes: "".join(yolo_rows(size, [b], cls=i + 1) for i, b in enumerate(boxes)))
    (export / "data.yaml").write_text(f"names: [question, {', '.join(names)}]\n")
    refused = qb(project, "import", "roboflow", str(export))
    said = " ".join(refused.stdout.split())
    assert refused.returncode == 1 and "or to null to drop its boxes" in said
    assert all(f"'{name}': Question_Block" in said for name in names)


def test_pages_whose_names_show_no_workbook_are_said_and_can_each_be_a_document(project, tmp_path):
    export = tmp_path / "numbers"
    _ultralytics_export(export, {str(n): ("train", [(20, 30, 100 + n, 80)]) for n in range(1, 5)})
    said = " ".join(qb(project, "import", "roboflow", str(export), "--dry-run").stdout.split())
    assert "4 of 4 page(s) have names that show no workbook (1, 2, 3 ...)" in said and "--document-per-page" in said
    done = qb(project, "import", "roboflow", str(export), "--document-per-page")
    assert done.returncode == 0, done.stdout
    assert sorted(app_boxes(project)) == ["1/1", "2/2", "3/3", "4/4"]
    assert "show no workbook" not in done.stdout


def test_pages_missing_from_the_split_lists_are_one_line(tmp_path, console):
    from tests.conftest import params_of

    from qblock.labeling.demo_data import write_demo_dataset
    from qblock.stages import export, split, validate

    write_demo_dataset(tmp_path / "app", documents=3, pages=3, seed=2)
    export.run(tmp_path / "app", tmp_path / "yolo", params_of("export"), tmp_path / "export.json", console)
    split.run(tmp_path / "yolo", tmp_path / "split", params_of("split"), console)
    for side in ("train", "val"):  # a split list older than the export: most pages in none
        (tmp_path / "split" / f"{side}.txt").write_text("".join((tmp_path / "split" / f"{side}.txt").read_text()
                                                               .splitlines(keepends=True)[:1]))
    with pytest.raises(Exception, match="validate"):
        validate.run(tmp_path / "yolo", tmp_path / "split", tmp_path / "reports", 0, console, tmp_path / "v.json")
    problems = json.loads((tmp_path / "reports" / "validate.json").read_text())["problems"]
    (said,) = [p["message"] for p in problems if "split list" in p["message"]]
    assert said.startswith("7 exported pages are in no split list (") and "run the split stage again" in said


def test_a_new_version_of_an_export_updates_the_pages_it_imported_before(project, tmp_path):
    """Pages whose names show no workbook go to a document named after the export; Roboflow's next version
    (`.v2i.`) is the same export, so a corrected box is a change, not a page skipped as seen."""
    pages = {"1": ("train", [(20, 30, 200, 80)]), "2": ("valid", [(40, 50, 150, 90)])}
    _ultralytics_export(tmp_path / "scans.v1i.yolov8", pages)
    assert qb(project, "import", "roboflow", str(tmp_path / "scans.v1i.yolov8")).returncode == 0
    assert sorted(app_boxes(project)) == ["scans/1", "scans/2"]
    pages["2"] = ("valid", [(40, 50, 160, 90)])  # a box corrected in Roboflow
    _ultralytics_export(tmp_path / "scans.v2i.yolov8", pages)
    done = qb(project, "import", "roboflow", str(tmp_path / "scans.v2i.yolov8"))
    said = " ".join(done.stdout.split())
    assert done.returncode == 0 and "changed 1" in said and "added 0" in said, said
    assert close(app_boxes(project)["scans/2"], [(40, 50, 160, 90)])


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_an_images_size_comes_from_its_header_turned_as_its_exif_says(tmp_path, suffix):
    from qblock.imports.pages import image_size, read_image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate a quarter turn to show it upright
    path = tmp_path / f"scan.{suffix}"
    Image.new("RGB", (300, 200), "white").save(path, exif=exif)
    assert image_size(path, "scan") == read_image(path, "scan")[1] == (200, 300)
    plain = tmp_path / f"plain.{suffix}"
    Image.new("RGB", (300, 200), "white").save(plain)
    assert image_size(plain, "plain") == (300, 200)


def test_a_zip_that_is_not_a_yolo_export_is_named_with_what_to_do(project, tmp_path):
    archive = tmp_path / "project-7-at-2026-11-02.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("result.json", "[]")
    refused = qb(project, "import", "roboflow", str(archive))
    said = " ".join(refused.stdout.split())
    assert refused.returncode == 1 and str(archive) in said and "qblock-import-" not in said
    assert "not a YOLO export" in said and "qblock import label-studio" in said


def test_a_dry_run_of_a_big_export_names_a_few_pages_and_counts_the_rest(project, tmp_path):
    export = tmp_path / "big"
    _ultralytics_export(export, {f"algebra_p{n:03d}": ("train", [(20, 30, 100, 40)]) for n in range(1, 31)})
    said = qb(project, "import", "roboflow", str(export), "--dry-run").stdout
    assert said.count("would add") == 11 and "would add 20 more page(s): algebra 20" in " ".join(said.split())


def test_the_import_commands_are_the_tools_table_and_each_takes_only_its_formats(project, roboflow_export,
                                                                                    label_studio_export):
    """`qblock import` has one command per row of imports/formats.py's TOOLS; a Label Studio JSON given to
    `import roboflow` is named as not one of Roboflow's formats, and --images only where a tool takes it."""
    from qblock.imports.formats import FORMATS, TOOLS

    listed = qb(project, "import", "--help").stdout
    assert all(f" {tool.name} " in listed for tool in TOOLS)
    assert all(name in {f.name for f in FORMATS} for tool in TOOLS for name in tool.formats)
    export, images, _ = label_studio_export
    wrong = qb(project, "import", "roboflow", str(export))
    said = " ".join(wrong.stdout.split())
    assert wrong.returncode == 1 and f"{export}: a roboflow export (COCO JSON or YOLO) is a folder or its zip" in said
    assert f"it looks like a Label Studio JSON export: `qblock import label-studio {export}`" in said
    assert "Traceback" not in wrong.stdout + wrong.stderr
    refused = qb(project, "import", "roboflow", str(roboflow_export), "--images", str(images))
    assert refused.returncode == 1 and "--images: a roboflow export carries its images" in refused.stdout
    assert not (project / "data").exists()



def test_keep_split_keeps_the_exports_own_train_valid_test_through_the_pipeline(project, roboflow_export,
                                                                                label_studio_export):
    """`--keep-split`: each page stays in the split its export gave it (Roboflow's valid is val), whatever its
    document; split says a document is then on more than one side. Imported again without it, the pages
    go back to the split by document ("changed 4"). A JSON export has no split of its own to keep."""
    from tests.conftest import params_of

    from qblock.stages import export, split, validate

    root, _ = roboflow_export
    for number, image in enumerate(sorted(root.glob("*/images/*"))):  # pages of one look: no copies across sides
        with Image.open(image) as opened:
            marked = opened.convert("RGB")
        ImageDraw.Draw(marked).rectangle((600, 600 - 20 * number, 630, 630), fill=(200, 0, 0))
        marked.save(image)
    result = qb(project, "import", "roboflow", str(root), "--keep-split")
    said = " ".join(result.stdout.split())
    assert result.returncode == 0 and "keeping the export's own split: train 2, val 1, test 1" in said, said
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    work = project / "pipeline"
    export.run(project / "data" / "dataset_root", work / "yolo", params_of("export"), work / "export.json", quiet)
    split.run(work / "yolo", work / "split", params_of("split"), quiet)
    validate.run(work / "yolo", work / "split", work / "reports", 0, quiet, work / "validated.json")
    lists = {side: (work / "split" / f"{side}.txt").read_text().split() for side in ("train", "val", "test")}
    assert lists == {"train": ["images/algebra__algebra_p001.png", "images/geometry__geometry_p001.png"],
                     "val": ["images/algebra__algebra_p002.png"], "test": ["images/geometry__geometry_p002.png"]}
    notes = " ".join(json.loads((work / "split" / "split.json").read_text())["notes"])
    assert "4 page(s) keep the split their export gave them" in notes
    assert "2 document(s) have pages on more than one side" in notes and "algebra" in notes

    again = qb(project, "import", "roboflow", str(root))
    assert again.returncode == 0 and "changed 4" in " ".join(again.stdout.split())
    export.run(project / "data" / "dataset_root", work / "yolo", params_of("export"), work / "export.json", quiet)
    split.run(work / "yolo", work / "split", params_of("split"), quiet)
    documents = json.loads((work / "split" / "split.json").read_text())["documents"]
    sides = {side: (work / "split" / f"{side}.txt").read_text().split()
             for side in ("train", "val", "test") if (work / "split" / f"{side}.txt").is_file()}
    for side, images in sides.items():  # by document again: a workbook's pages on one side
        assert all(documents[image.split("/")[1].split("__")[0]] == side for image in images)

    export_file, images, _ = label_studio_export
    refused = qb(project, "import", "label-studio", str(export_file), "--images", str(images), "--keep-split")
    assert refused.returncode == 1 and "has no train/valid/test of its own to keep" in refused.stdout


def test_a_page_uploaded_twice_resized_and_re_encoded_is_named_and_distinct_pages_are_not(project, tmp_path):
    """Real drawn workbook pages of 4 documents, one of them also under another workbook's name at 90% size
    as a JPEG (other bytes, the same page): the import names that pair, and only it."""
    from qblock.labeling.demo_data import write_demo_dataset

    drawn = tmp_path / "drawn"
    write_demo_dataset(drawn, 4, 2, seed=3)
    root = tmp_path / "export"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    (root / "data.yaml").write_text("train: train/images\nnc: 1\nnames: ['question']\n")
    pages = sorted(drawn.glob("documents/*/pages/*.png"))
    for number, image in enumerate(pages):
        groups = json.loads((image.parent.parent / "groups" / f"{image.stem}_groups.json").read_text())
        with Image.open(image) as opened:
            size = opened.size
        boxes = [(g["combinedBbox"]["x"], g["combinedBbox"]["y"], g["combinedBbox"]["width"],
                  g["combinedBbox"]["height"]) for g in groups["groups"]]
        name = f"book{number // 2}_p{number % 2 + 1:03d}"
        (root / "train" / "images" / f"{name}.png").write_bytes(image.read_bytes())
        (root / "train" / "labels" / f"{name}.txt").write_text(yolo_rows(size, boxes))
        if number == 0:  # the same page again: resized, as a JPEG, under another workbook
            with Image.open(image) as opened:
                opened.convert("RGB").resize((size[0] * 9 // 10, size[1] * 9 // 10)).save(
                    root / "train" / "images" / "rescan_p001.jpg", quality=80)
            (root / "train" / "labels" / "rescan_p001.txt").write_text(yolo_rows(size, boxes))
    result = qb(project, "import", "roboflow", str(root), "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said
    assert "1 pair(s) of pages in different documents look like one page" in said
    assert "book0_p001.png ~ " in said and "rescan_p001.jpg" in said


def test_the_same_export_under_another_file_name_is_unchanged_not_held_back(project, tmp_path):
    """Pages whose names show no workbook go to a document named after the export; the same export zipped
    under another name is "unchanged 3", not "3 pages already ... under another name" for a document
    nothing then goes into."""
    root = tmp_path / "scans.v3i.yolov8"
    for number in (1, 2, 3):
        boxes = [(20.0 + number, 30.0, 200.0, 60.0 + 10 * number)]
        draw(root / "train" / "images" / f"{number}.jpg", (400, 500), boxes)
        (root / "train" / "labels").mkdir(parents=True, exist_ok=True)
        (root / "train" / "labels" / f"{number}.txt").write_text(yolo_rows((400, 500), boxes))
    (root / "data.yaml").write_text("train: train/images\nnc: 1\nnames: ['question']\n")
    first = qb(project, "import", "roboflow", str(root))
    assert first.returncode == 0 and "added 3" in " ".join(first.stdout.split())
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in root.rglob("*"):
            zipped.write(path, path.relative_to(root).as_posix())
    again = " ".join(qb(project, "import", "roboflow", str(archive)).stdout.split())
    assert "unchanged 3" in again and "under another name" not in again, again
    assert "'data'" not in again and "nothing to write" in again
    assert sorted(app_boxes(project)) == ["scans/1", "scans/2", "scans/3"]
    # the same picture with other boxes in an export of another name: held back and said, never changed
    (root / "train" / "labels" / "1.txt").write_text(yolo_rows((400, 500), [(50.0, 50.0, 100.0, 100.0)]))
    other = " ".join(qb(project, "import", "roboflow", str(root), "--into", "elsewhere").stdout.split())
    assert "1 page(s) already in the app's folder under another name" in other and "unchanged 2" in other

"""What a person sees: files named as the app names them, a groups file saved with a byte-order mark
read like any other, `qblock status` one line per document at 80 columns, run names and the one-line
description of a run."""

from __future__ import annotations

import io

from rich.console import Console
from tests.conftest import bbox, params_of, write_page

from qblock.core.errors import StageFailed
from qblock.labeling.status import collect_status, print_status
from qblock.stages import export, split, validate


def test_a_groups_file_saved_with_a_byte_order_mark_is_read(tmp_path, console):
    groups = write_page(tmp_path / "app", "수학 1", "page_001", [bbox(10, 10, 50, 30)])
    groups.write_bytes(b"\xef\xbb\xbf" + groups.read_bytes())  # as Notepad and PowerShell 5 save UTF-8
    export.run(tmp_path / "app", tmp_path / "yolo", params_of("export"), tmp_path / "export.json", console)
    label = (tmp_path / "yolo" / "labels").glob("*.txt")
    assert [path.read_text().count("\n") for path in label] == [1]
    assert "error" not in console.text


def test_validate_names_the_page_in_the_apps_folder_with_the_exported_copy_in_brackets(tmp_path, console):
    app = tmp_path / "app"
    for page in ("page_001", "page_002"):
        for document in ("algebra", "geometry", "calculus"):
            write_page(app, document, page, [bbox(10, 10, 50, 30)])
    export.run(app, tmp_path / "yolo", params_of("export"), tmp_path / "export.json", console)
    split.run(tmp_path / "yolo", tmp_path / "split", params_of("split"), console)
    exported = tmp_path / "yolo" / "images" / "algebra__page_002.png"
    exported.write_bytes(exported.read_bytes()[:-30])  # truncated, as a copy cut off on the way
    try:
        validate.run(tmp_path / "yolo", tmp_path / "split", tmp_path / "reports", 2, console, tmp_path / "cache.json",
                     dataset_root=app)
        raise AssertionError("validate passed a truncated image")
    except StageFailed:
        pass
    said = " ".join(console.text.split())
    assert f"{(app / 'documents' / 'algebra' / 'pages' / 'page_002.png').as_posix()} [exported copy: {exported}]" \
        in said and "truncated" in said


def test_status_keeps_one_line_per_document_at_80_columns(tmp_path):
    root = tmp_path / "app"
    long_name = "고등 수학 (상) 개념원리 2026 개정판 — 1단원 다항식의 연산 워크북 제2권"
    for document in (long_name, "algebra"):
        for number in range(1, 14):
            write_page(root, document, f"page_{number:03d}", [bbox(1, 1, 50, 20)])
            if number > 3:
                (root / "documents" / document / "groups" / f"page_{number:03d}_groups.json").unlink()
    for width in (80, 100, 132):
        console = Console(file=io.StringIO(), width=width, color_system=None)
        print_status(console, collect_status(root))
        lines = console.file.getvalue().splitlines()
        rows = [line for line in lines if line.startswith("│") and ("algebra" in line or "고등" in line)]
        assert len(rows) == 2, lines  # each document's row is one line, not wrapped
        assert all(len(line) <= width for line in lines)
        assert "6/26" in console.file.getvalue()


def test_a_run_is_named_by_experiment_or_commit_then_preset_and_model(monkeypatch):
    from tests.conftest import conf_params

    from qblock.model.run_log import run_name

    params = conf_params("train=desktop_4070")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    commit = {"git.commit": "a1b2c3d4e5f6", "git.dirty": "false"}
    assert run_name(params, commit) == "a1b2c3d-desktop_4070-yolov8m"
    assert run_name(params, commit | {"git.dirty": "true"}) == "a1b2c3d+dirty-desktop_4070-yolov8m"
    monkeypatch.setenv("DVC_EXP_NAME", "tiled-dace")
    assert run_name(params, commit) == "tiled-dace-desktop_4070-yolov8m"


def test_a_runs_description_holds_its_headline_metrics_and_the_verdict():
    from qblock.model.champion import Decision
    from qblock.stages.evaluate import headline

    metrics = {"mAP50": 0.9612, "mAP50-95": 0.78, "crop_rate": 0.846, "val_pages": 16}
    line = headline(metrics, Decision("4", True, "mAP50-95 0.7800 beats champion v3's 0.7100", "mAP50-95", 0.78))
    assert line == ("mAP50 0.961 · mAP50-95 0.780 · crop_rate 0.846 on 16 val pages · v4 champion: "
                    "mAP50-95 0.7800 beats champion v3's 0.7100")
    assert "\n" not in line


def test_page_pictures_are_read_at_100_percent_and_a_doubled_question_shows_two_colours():
    import numpy as np
    from PIL import Image, ImageDraw

    from qblock.data.contact_sheet import PROPOSED, TILE_HEIGHT, draw_box, page_tile

    page = Image.new("RGB", (1240, 1754), "white")  # A4 at 150 dpi
    tile, scale = page_tile(page)
    assert tile.height == TILE_HEIGHT and abs(scale - TILE_HEIGHT / 1754) < 1e-9
    draw = ImageDraw.Draw(tile)
    for number, box in enumerate([(100, 100, 600, 300), (110, 110, 590, 290)]):  # two boxes on one question
        draw_box(draw, box, PROPOSED[number % 2], f"q{number + 1:02d} 0.91")
    pixels = np.asarray(tile)
    for colour in PROPOSED:
        assert (pixels == colour).all(axis=-1).any(), colour  # each box in a colour of its own
    label = (pixels == PROPOSED[0]).all(axis=-1)[100:160, 100:300]  # the first label's filled background
    rows = np.flatnonzero(label.sum(axis=1) > 10)
    assert rows.size and rows[-1] - rows[0] >= 16  # a label at least 16 px high: read without zooming


def test_a_problem_with_a_line_break_in_its_name_prints_on_one_line():
    from io import StringIO

    import pytest
    from rich.console import Console

    from qblock.core.errors import StageFailed
    from qblock.data.problems import ProblemLog

    log = ProblemLog()
    log.error("documents/수학\n2권/groups/page_001_groups.json", "malformed JSON:\tline 1")
    out = StringIO()
    with pytest.raises(StageFailed):
        log.report(Console(file=out, width=400), "export")
    (line,) = [line for line in out.getvalue().splitlines() if line.startswith("error: documents")]
    assert line == "error: documents/수학\\n2권/groups/page_001_groups.json: malformed JSON:\\tline 1"

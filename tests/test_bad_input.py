"""Bad input met as a new user would meet it: each is a clear message naming the file, and
nothing already written is lost or changed."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.repos import folder_nas, laptop_with_origin, sh


@pytest.mark.slow
def test_publish_names_the_label_file_that_stopped_it(tmp_path):
    """The export stage's `error:` lines (its stdout, under `dvc repro`) reach the person, not only
    dvc's 'failed to reproduce'; nothing is committed."""
    laptop, _ = laptop_with_origin(tmp_path, [str(folder_nas(tmp_path))])
    app = tmp_path / "app"
    sh([sys.executable, "-m", "qblock", "demo-data", str(app), "--documents", "2", "--pages", "2"], laptop)
    broken = next(app.glob("documents/*/groups/page_002_groups.json"))
    broken.write_text('{"groups": [{"combinedBbox": {"x": 10, "y": ', encoding="utf-8")
    head = sh(["git", "rev-parse", "HEAD"], laptop).stdout
    done = subprocess.run([sys.executable, "-m", "qblock", "publish", "--app", str(app)], cwd=laptop,
                          capture_output=True, text=True)
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "page_002_groups.json" in said and broken.parent.parent.name in said, said
    assert "Traceback" not in said
    assert sh(["git", "rev-parse", "HEAD"], laptop).stdout == head


def _page_variants(folder: Path) -> dict[str, Path]:
    """One drawn page as the app would have it (8-bit RGB), and the same page as PDF-to-PNG tools
    write it: on a transparent background (black where transparent), and in 16-bit greys."""
    from qblock.labeling.demo_data import render_page

    page, _ = render_page(random.Random(5), "doc", 1, 1)
    grey = np.asarray(page.convert("L"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"8-bit": folder / "8bit.png", "transparent": folder / "transparent.png", "16-bit": folder / "16bit.png"}
    page.save(paths["8-bit"])
    ink = 255 - grey  # opacity: the ink's darkness
    Image.fromarray(np.dstack([np.zeros_like(grey)] * 3 + [ink]), "RGBA").save(paths["transparent"])
    Image.fromarray(grey.astype(np.uint16) * 257).save(paths["16-bit"])  # 0-255 -> 0-65535
    return paths


def test_transparent_and_16_bit_pages_read_as_on_paper_for_snapping(tmp_path):
    from qblock.quality.ink_snap import ink_mask

    paths = _page_variants(tmp_path)
    with Image.open(paths["8-bit"]) as plain:
        expected = ink_mask(plain)
    assert expected.sum() > 1000
    for kind in ("transparent", "16-bit"):
        with Image.open(paths[kind]) as odd:
            assert odd.mode in ("RGBA", "I;16"), odd.mode
            assert odd.convert("L").getextrema()[0] in (0, 255)  # naively read: all black or all white
            mask = ink_mask(odd)
        assert (mask != expected).mean() < 0.002, kind  # the same ink, to anti-aliasing


def test_export_writes_transparent_and_16_bit_pages_as_training_must_read_them(tmp_path):
    """OpenCV (what training reads with) sees the exported page as the 8-bit one; an ordinary page
    is still a link to the app's file, not a copy."""
    import cv2
    from rich.console import Console
    from tests.conftest import params_of

    from qblock.stages import export

    root = tmp_path / "root"
    for name, source in _page_variants(tmp_path / "variants").items():
        document = root / "documents" / name
        (document / "pages").mkdir(parents=True)
        (document / "groups").mkdir()
        shutil.copyfile(source, document / "pages" / "page_001.png")
        (document / "groups" / "page_001_groups.json").write_text(json.dumps(
            {"groups": [{"combinedBbox": {"x": 60, "y": 90, "width": 300, "height": 200}}]}), encoding="utf-8")
    export.run(root, tmp_path / "yolo", params_of("export"), tmp_path / "export.json", Console(quiet=True))
    exported = {path.name.split("__")[0]: path for path in (tmp_path / "yolo" / "images").iterdir()}
    plain = cv2.imread(str(exported["8-bit"]), cv2.IMREAD_COLOR).astype(int)
    for kind in ("transparent", "16-bit"):
        seen = cv2.imread(str(exported[kind]), cv2.IMREAD_COLOR).astype(int)
        assert np.abs(seen - plain).mean() < 2, kind
    assert exported["8-bit"].samefile(root / "documents" / "8-bit" / "pages" / "page_001.png")


def _app_with(tmp_path: Path, documents: dict[str, dict[str, bytes | None]]) -> Path:
    """An app folder: per document, page name -> groups file bytes (None: a plain one box file)."""
    from qblock.labeling.demo_data import render_page

    page, _ = render_page(random.Random(1), "doc", 1, 1)
    root = tmp_path / "root"
    for document, pages in documents.items():
        for name, groups in pages.items():
            (root / "documents" / document / "pages").mkdir(parents=True, exist_ok=True)
            (root / "documents" / document / "groups").mkdir(parents=True, exist_ok=True)
            page.save(root / "documents" / document / "pages" / f"{name}.png")
            (root / "documents" / document / "groups" / f"{name}_groups.json").write_bytes(groups or json.dumps(
                {"groups": [{"combinedBbox": {"x": 60, "y": 90, "width": 300, "height": 200}}]}).encode())
    return root


def _export_fails(tmp_path: Path, root: Path) -> str:
    """Run export; it must stop with a report, not a traceback, and write no export."""
    from rich.console import Console
    from tests.conftest import params_of

    from qblock.core.errors import StageFailed
    from qblock.stages import export

    console = Console(record=True, width=300)
    with pytest.raises(StageFailed):
        export.run(root, tmp_path / "yolo", params_of("export"), tmp_path / "export.json", console)
    assert not (tmp_path / "yolo" / "manifest.json").exists()
    return " ".join(console.export_text().split())


def test_hostile_groups_files_are_errors_naming_the_file(tmp_path):
    root = _app_with(tmp_path, {"doc": {"page_001": b"[" * 100_000 + b"]" * 100_000,
                                        "page_002": b'{"groups": [{"combinedBbox": {"x": ' + b"9" * 5000 + b"}}]}",
                                        "page_003": None}})
    said = _export_fails(tmp_path, root)
    assert "page_001_groups.json: not a groups file: JSON nested too deeply" in said
    assert "page_002_groups.json: not a groups file: a number of 5000 digits (no box has one)" in said
    assert "set_int_max_str_digits" not in said  # Python's advice is for programmers


def test_a_page_of_625_million_pixels_is_refused_by_name_before_it_is_decoded(tmp_path):
    import struct
    import zlib

    root = _app_with(tmp_path, {"doc": {"page_001": None, "page_002": None}})
    header = struct.pack(">IIBBBBB", 25_000, 25_000, 8, 0, 0, 0, 0)  # 8-bit grey
    chunk = b"IHDR" + header
    huge = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + \
        struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    (root / "documents" / "doc" / "pages" / "page_002.png").write_bytes(huge)
    said = _export_fails(tmp_path, root)
    assert "documents/doc/pages/page_002.png: 25000x25000 is 625 million pixels" in said


def test_a_link_leading_outside_the_app_folder_is_refused_by_name(tmp_path):
    root = _app_with(tmp_path, {"doc": {"page_001": None}})
    secret = tmp_path / "elsewhere" / "tax_return.png"
    secret.parent.mkdir()
    shutil.copyfile(root / "documents" / "doc" / "pages" / "page_001.png", secret)
    (root / "documents" / "doc" / "pages" / "page_002.png").symlink_to(secret)
    (root / "documents" / "doc" / "groups" / "page_002_groups.json").write_text('{"groups": []}')
    inside = root / "documents" / "doc" / "pages" / "page_003.png"
    inside.symlink_to(root / "documents" / "doc" / "pages" / "page_001.png")  # within the root: fine
    (root / "documents" / "doc" / "groups" / "page_003_groups.json").write_text('{"groups": []}')
    said = _export_fails(tmp_path, root)
    assert "pages/page_002.png: a link leading outside" in said and "tax_return.png" in said
    assert "page_003.png: a link" not in said


def test_names_the_windows_desktop_cannot_hold_or_would_fold_together_are_refused(tmp_path):
    import unicodedata

    nfc = "중학 수학"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    root = _app_with(tmp_path, {nfc: {"page_001": None}, nfd: {"page_001": None},
                                "a:b*c?": {"page_001": None}, "CON": {"page_001": None},
                                "trailing.": {"page_001": None}, "cased": {"Page_001": None, "page_001": None}})
    said = _export_fails(tmp_path, root)
    plain = unicodedata.normalize("NFC", said)
    assert "differs from documents/중학 수학/groups/page_001_groups.json only by Unicode form (this one is" in plain
    assert "written NFD, the other NFC: they print alike)" in plain or \
        "written NFC, the other NFD: they print alike)" in plain  # which of the two is which
    assert "'a:b*c?' has a character Windows does not allow" in said
    assert "'CON' is a name Windows reserves (CON)" in said
    assert "'trailing.' ends with a dot or a space" in said
    assert "documents/cased/groups/page_001_groups.json: differs from documents/cased/groups/Page_001_groups.json" \
        " only by letter case" in said


@pytest.mark.slow
def test_a_publish_while_another_holds_dvcs_lock_says_so_and_never_suggests_deleting_it(tmp_path):
    laptop, _ = laptop_with_origin(tmp_path, [str(folder_nas(tmp_path))])
    app = tmp_path / "app"
    sh([sys.executable, "-m", "qblock", "demo-data", str(app), "--documents", "2", "--pages", "1"], laptop)
    (laptop / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    target = str((laptop / "data" / "dataset_root").resolve())  # as another, live dvc process holds it
    (laptop / ".dvc" / "tmp" / "rwlock").write_text(json.dumps(
        {"read": {}, "write": {target: {"pid": os.getpid(), "cmd": "dvc add data/dataset_root"}}}))
    done = subprocess.run([sys.executable, "-m", "qblock", "publish", "--app", str(app)], cwd=laptop,
                          capture_output=True, text=True)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, said
    assert "Another qblock or dvc command is working in this project" in said
    assert "rwlock" not in said and "Traceback" not in said


def test_a_dangling_link_among_the_pages_is_named_not_a_traceback(tmp_path):
    root = _app_with(tmp_path, {"doc": {"page_001": None, "page_002": None}})
    image = root / "documents" / "doc" / "pages" / "page_002.png"
    image.unlink()
    image.symlink_to(root / "documents" / "doc" / "pages" / "gone.png")  # inside the root, leading nowhere
    said = _export_fails(tmp_path, root)
    assert "pages/page_002.png: cannot read the page image" in said

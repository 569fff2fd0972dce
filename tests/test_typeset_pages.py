"""Pages typeset by XeLaTeX (`qblock demo-data --style typeset`): the ground truth is the tight
union of each question's ink, taken from the typesetter; the pages go through export, split and
validate like the app's own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from qblock.labeling.typeset_pages import missing_tools, page_colours, question_box
from qblock.quality.crops import iou
from qblock.quality.ink_snap import ink_extent, ink_mask

needs_tex = pytest.mark.skipif(bool(missing_tools()), reason="xelatex or pdftoppm missing (make test-tools)")


@pytest.fixture(scope="module")
def typeset_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("typeset") / "dataset_root"
    done = subprocess.run([sys.executable, "-m", "qblock", "demo-data", str(root), "--style", "typeset",
                           "--documents", "2", "--pages", "2", "--seed", "3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout
    return root


def page_boxes(root: Path):
    for groups in sorted(root.glob("documents/*/groups/*_groups.json")):
        data = json.loads(groups.read_text(encoding="utf-8"))
        page = groups.parent.parent / "pages" / f"{data['page']}.png"
        boxes = [(b["x"], b["y"], b["x"] + b["width"], b["y"] + b["height"])
                 for b in (g["combinedBbox"] for g in data["groups"])]
        yield page, data, boxes


@needs_tex
def test_every_box_is_the_tight_extent_of_its_questions_ink(typeset_root):
    pages = list(page_boxes(typeset_root))
    assert len(pages) == 4 and sum(len(boxes) for _, _, boxes in pages) >= 8
    for page, data, boxes in pages:
        with Image.open(page) as image:
            assert image.size == (data["imageWidth"], data["imageHeight"])
            mask = ink_mask(image)
        assert boxes, page
        for index, box in enumerate(boxes):
            # tight: the ink inside the box reaches each of its edges (to within a pixel of anti-aliasing);
            # pixel by pixel, as a fraction's 1 px stem counts (ink_extent wants 2 per row, against specks)
            ys, xs = np.nonzero(mask[box[1]:box[3], box[0]:box[2]])
            extent = (box[0] + xs.min(), box[1] + ys.min(), box[0] + xs.max() + 1, box[1] + ys.max() + 1)
            assert extent is not None and max(abs(a - b) for a, b in zip(extent, box, strict=True)) <= 1, (page, box)
            for other in boxes[index + 1:]:
                assert iou(box, other) == 0, (page, box, other)
        # the running header (title and rule) is ink above every question, in no box
        header = ink_extent(mask, (0, 0, mask.shape[1], min(b[1] for b in boxes)))
        assert header is not None


@needs_tex
def test_typeset_pages_go_through_export_split_and_validate(typeset_root, tmp_path):
    from rich.console import Console
    from tests.conftest import conf_params

    from qblock.stages import export, split, validate

    params = conf_params()
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    export.run(typeset_root, tmp_path / "yolo", params.export, tmp_path / "export.json", quiet)
    params.split.val_fraction = 0.5
    split.run(tmp_path / "yolo", tmp_path / "split", params.split, quiet)
    validate.run(tmp_path / "yolo", tmp_path / "split", tmp_path / "reports", 0, quiet, tmp_path / "validated.json")
    report = json.loads((tmp_path / "reports" / "validate.json").read_text(encoding="utf-8"))
    assert report["ok"], report["problems"]
    assert len(list((tmp_path / "yolo" / "labels").glob("*.txt"))) == 4


def test_each_question_is_read_by_its_own_colour_at_half_coverage():
    """Two questions side by side in their page colours, anti-aliased; black ink between them (a
    header) belongs to neither."""
    colours = page_colours({1: 1, 2: 1, 3: 1})
    assert colours[1] != colours[2]
    page = Image.new("RGB", (400, 200), "white")
    draw = ImageDraw.Draw(page)
    draw.ellipse((20, 30, 120, 130), outline=colours[1], width=3)
    draw.line((150, 10, 250, 190), fill=(0, 0, 0), width=4)
    draw.rectangle((280, 50, 380, 90), fill=colours[2])
    blurred = np.asarray(page.resize((800, 400), Image.Resampling.BILINEAR).resize((400, 200), Image.Resampling.BOX))
    first, second = question_box(blurred, colours[1], "q1"), question_box(blurred, colours[2], "q2")
    assert abs(first.x - 20) <= 1 and abs(first.y - 30) <= 1 and abs(first.x + first.width - 121) <= 1
    assert abs(second.x - 280) <= 1 and abs(second.y + second.height - 91) <= 1
    with pytest.raises(RuntimeError, match="q3: no ink"):
        question_box(blurred, colours[3], "q3")


def test_without_tex_it_says_what_to_install(tmp_path):
    """A clear error naming the missing tools and the packages, no traceback, nothing written."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "dvc"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    done = subprocess.run([sys.executable, "-m", "qblock", "demo-data", str(tmp_path / "root"), "--style",
                           "typeset"], capture_output=True, text=True, env={**os.environ, "PATH": str(bin_dir)})
    assert done.returncode == 1
    assert "xelatex" in done.stderr + done.stdout and "texlive-xetex" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "root" / "documents").exists()

"""HiLEx at its pinned commit, with its pages given back their shape.

HiLEx (github.com/HiLEx-DLA/HiLEx, CC BY 4.0) is a Roboflow export whose pages were stretched to
640x640; exam pages are portrait (A4 1.41, Letter 1.29), so each page is stretched back to
``page_aspect`` before it is imported: YOLO's boxes are shares of the image, so they stay right.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from qblock.core.errors import UserError
from qblock.pretrain.recipe import HilexParams
from qblock.sync.commands import run

SOURCE_ENV = "QBLOCK_HILEX_SOURCE"  # a mirror or a local clone to read the pinned commit from


def checkout(params: HilexParams, into: Path) -> Path:
    """The export folder of ``params.commit``, checked out under ``into`` (a fresh folder)."""
    source = os.environ.get(SOURCE_ENV) or params.source
    clone = into / "repository"
    run(["git", "clone", "--quiet", "--no-checkout", source, str(clone)], into, f"cloning HiLEx from {source}",
        f"Without internet, clone {params.source} on another machine and set {SOURCE_ENV} to that clone.")
    run(["git", "checkout", "--quiet", params.commit, "--", params.folder], clone,
        f"checking out {params.folder} at commit {params.commit}", f"{source} lacks the pinned commit.")
    return clone / params.folder


def restore_shape(source: Path, target: Path, aspect: float) -> None:
    """The page at ``aspect`` (height / width), its width kept; the boxes' shares are unchanged."""
    with Image.open(source) as image:
        width = image.width
        image.convert("RGB").resize((width, round(width * aspect)), Image.Resampling.LANCZOS).save(
            target.with_suffix(".png"), compress_level=1)


def get(params: HilexParams, out: Path, console) -> int:
    """Write HiLEx's export, pages reshaped, to ``out``; return the page count."""
    if params.page_aspect <= 0:
        raise UserError(f"hilex.page_aspect: {params.page_aspect} must be above 0")
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="qblock-hilex-") as work:
        folder = checkout(params, Path(work))
        console.print(f"hilex: {params.folder} at {params.commit[:12]}; stretching the pages back to "
                      f"{params.page_aspect:g} x their width")
        count = 0
        for item in sorted(folder.rglob("*")):
            relative = item.relative_to(folder)
            if item.is_dir() or item.name.startswith("."):
                continue
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if item.parent.name == "images":
                restore_shape(item, target, params.page_aspect)
                count += 1
            else:
                shutil.copyfile(item, target)
    console.print(f"hilex: {count} pages in {out}")
    return count

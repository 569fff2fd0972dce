"""The size a page is seen at in training: the preset's ``imgsz``, larger when there are few pages,
and never so large that its largest questions are out of the model's reach.

A new workbook style with a few labeled pages is where resolution pays: typeset pages, whose boxes
sit tight on small print, crop 0.745 after 16 pages from the base model at 448 px, 0.819 at 640 and
0.87 at 800 (docs/pretraining.md), while the demo's 56 pages crop the same at 448 and 640. A
training's cost is about its pixels per epoch, so the cpu preset keeps that of ``full_pages`` pages at
``imgsz``: a smaller training set is seen larger, by the square root of how much smaller, in steps of
32 (what the model's strides need), up to ``imgsz_max``.

A YOLOv8 head draws a box as four distances from one grid point, each at most 15 grid steps
(``reg_max`` 16), and its training may hand a large box to the middle level's points (16 px apart:
ultralytics issue 11634), whose boxes then stop about 480 px across, short of the question. A
one-column workbook's question spans 0.59 of an A4 page's height across: at 800 px that is 470 px,
and the model trained there cut every such box short (docs/pretraining.md). So the size is capped
where the training pages' large boxes (``BOX_QUANTILE`` of them) stay within ``train.box_reach`` px.
The size trained at is in the checkpoint; evaluate, the registry and propose read it from there
(``trained_imgsz``), never from the params.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from qblock.config.schema import TrainParams

STRIDE = 32  # ultralytics rounds an image size to a multiple of the model's largest stride
BOX_QUANTILE = 0.95  # the share of training boxes that must fit the reach (a few odd ones do not decide)


def training_size(train: TrainParams, pages: int, largest_box: float | None = None) -> int:
    """The image size to train at with ``pages`` training pages whose large boxes span ``largest_box`` of
    their page's longer side (None: not known, no cap)."""
    size = train.imgsz
    if 0 < pages < train.full_pages and train.imgsz_max > train.imgsz:
        larger = int(train.imgsz * math.sqrt(train.full_pages / pages)) // STRIDE * STRIDE
        size = max(train.imgsz, min(train.imgsz_max, larger))
    cap = reach_cap(train, largest_box)
    return min(size, cap) if cap else size


def reach_cap(train: TrainParams, largest_box: float | None) -> int | None:
    """The largest size (a multiple of 32) at which boxes spanning ``largest_box`` of the page stay within
    ``train.box_reach`` px; None when there is no limit."""
    if not train.box_reach or not largest_box or largest_box <= 0:
        return None
    return max(STRIDE, int(train.box_reach / largest_box) // STRIDE * STRIDE)


def largest_box(export_dir: Path, images: Iterable[str]) -> float | None:
    """The ``BOX_QUANTILE`` of the boxes' longer side, each as a share of its page's longer side, over the
    split list's ``images`` (``images/NAME``) of an export (labels validate has checked); None without boxes."""
    from PIL import Image

    from qblock.data.labels import parse_clean

    sides = []
    for entry in images:
        image = export_dir / entry
        labels = export_dir / "labels" / f"{Path(entry).stem}.txt"
        if not labels.is_file() or not image.is_file():
            continue
        with Image.open(image) as page:  # the header only
            width, height = page.size
        sides += [max(row.w * width, row.h * height) / max(width, height)
                  for row in parse_clean(labels.read_text(encoding="utf-8"))]
    if not sides:
        return None
    sides.sort()
    return sides[min(len(sides) - 1, int(BOX_QUANTILE * len(sides)))]


def trained_imgsz(model) -> int | None:
    """The image size an ultralytics model was trained at, from its checkpoint's train arguments."""
    size = ((getattr(model, "ckpt", None) or {}).get("train_args") or {}).get("imgsz")
    return int(size) if isinstance(size, int | float) else None


def imgsz_of(weights: Path, fallback: int) -> int:
    """The image size the weights file was trained at (``fallback`` when it does not say)."""
    from ultralytics import YOLO

    return trained_imgsz(YOLO(str(weights))) or fallback

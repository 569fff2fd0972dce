"""The size a page is seen at in training: the preset's ``imgsz``, larger when there are few pages.

A new workbook style with a few labeled pages is where resolution pays: typeset pages, whose boxes
sit tight on small print, crop 0.745 after 16 pages from the base model at 448 px, 0.819 at 640 and
0.87 at 800 (docs/pretraining.md), while the demo's 56 pages crop the same at 448 and 640. A
training's cost is about its pixels per epoch, so the cpu preset keeps that of ``full_pages`` pages at
``imgsz``: a smaller training set is seen larger, by the square root of how much smaller, in steps of
32 (what the model's strides need), up to ``imgsz_max``. The size trained at is in the checkpoint;
evaluate, the registry and propose read it from there (``trained_imgsz``), never from the params.
"""

from __future__ import annotations

import math
from pathlib import Path

from qblock.config.schema import TrainParams

STRIDE = 32  # ultralytics rounds an image size to a multiple of the model's largest stride


def training_size(train: TrainParams, pages: int) -> int:
    """The image size to train at with ``pages`` training pages."""
    if pages <= 0 or pages >= train.full_pages or train.imgsz_max <= train.imgsz:
        return train.imgsz
    larger = int(train.imgsz * math.sqrt(train.full_pages / pages)) // STRIDE * STRIDE
    return max(train.imgsz, min(train.imgsz_max, larger))


def trained_imgsz(model) -> int | None:
    """The image size an ultralytics model was trained at, from its checkpoint's train arguments."""
    size = ((getattr(model, "ckpt", None) or {}).get("train_args") or {}).get("imgsz")
    return int(size) if isinstance(size, int | float) else None


def imgsz_of(weights: Path, fallback: int) -> int:
    """The image size the weights file was trained at (``fallback`` when it does not say)."""
    from ultralytics import YOLO

    return trained_imgsz(YOLO(str(weights))) or fallback

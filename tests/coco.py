"""An independent COCO evaluation (pycocotools) of YOLO-style ground truth and predictions."""

from __future__ import annotations

import contextlib
import io

import numpy as np


def coco_map(images: dict[str, tuple[int, int]], truth: dict[str, list[tuple]], predictions: list[dict]) -> tuple:
    """(mAP50, mAP50-95) by pycocotools.

    ``images``: file name -> (width, height); ``truth``: file name -> [(x0, y0, x1, y1)] in pixels;
    ``predictions``: COCO result dicts with ``file_name``, ``bbox`` [x, y, w, h] and ``score``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = {name: i + 1 for i, name in enumerate(sorted(images))}
    annotations = [
        {"id": n + 1, "image_id": ids[name], "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0}
        for n, (name, box) in enumerate((name, box) for name in sorted(truth) for box in truth[name])
        for x0, y0, x1, y1 in [box]
    ]
    ground = COCO()
    ground.dataset = {"images": [{"id": ids[n], "width": w, "height": h} for n, (w, h) in images.items()],
                      "annotations": annotations, "categories": [{"id": 1, "name": "Question_Block"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground.createIndex()
        results = [{"image_id": ids[p["file_name"]], "category_id": 1, "bbox": p["bbox"], "score": p["score"]}
                   for p in predictions]
        detections = ground.loadRes(results) if results else COCO()
        evaluation = COCOeval(ground, detections, "bbox")
        evaluation.params.maxDets = [1, 10, 300]  # ultralytics keeps up to 300 boxes a page
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, 0, 0, -1]  # IoU x recall, area "all", 300 boxes
    if (precision < 0).all():
        return 0.0, 0.0
    return float(np.mean(precision[0][precision[0] > -1])), float(np.mean(precision[precision > -1]))

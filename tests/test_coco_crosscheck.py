"""evaluate's mAP (ultralytics' validator) against pycocotools on the same predictions.

The end-to-end module checks the real evaluate stage's predictions; its smoke model scores near
zero, so this module also feeds clearly non-trivial predictions (ground truth, jittered, with
misses and false alarms) through the validator's own matching and AP code.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from tests.coco import coco_map

TOLERANCE = 0.01  # absolute mAP; measured gap ~0.003 (see the README, "mAP against COCO")


def synthetic_page(rng: random.Random, name: str):
    width, height = 800, 1100
    truth, predictions = [], []
    for _ in range(rng.randint(4, 9)):
        x0, y0 = rng.uniform(20, 500), rng.uniform(20, 900)
        box = (x0, y0, x0 + rng.uniform(120, 280), y0 + rng.uniform(60, 180))
        truth.append(box)
        if rng.random() < 0.85:  # found, a little off
            jitter = [rng.gauss(0, 9) for _ in range(4)]
            found = [c + j for c, j in zip(box, jitter, strict=True)]
            predictions.append((found, rng.uniform(0.3, 1.0)))
    for _ in range(rng.randint(0, 3)):  # false alarms
        x0, y0 = rng.uniform(0, 600), rng.uniform(0, 950)
        predictions.append(([x0, y0, x0 + 150, y0 + 90], rng.uniform(0.01, 0.7)))
    return (width, height), truth, predictions


def ultralytics_map(pages: dict) -> tuple[float, float]:
    """The validator's own code path for one batch per page: match_predictions + DetMetrics."""
    from ultralytics.models.yolo.detect import DetectionValidator

    validator = DetectionValidator()
    validator.metrics.names = {0: "Question_Block"}
    validator.metrics.clear_stats()
    for name, (_, truth, predictions) in pages.items():
        boxes = torch.tensor([p[0] for p in predictions], dtype=torch.float32).reshape(-1, 4)
        preds = {"bboxes": boxes, "cls": torch.zeros(len(predictions)),
                 "conf": torch.tensor([p[1] for p in predictions])}
        batch = {"bboxes": torch.tensor(truth, dtype=torch.float32).reshape(-1, 4), "cls": torch.zeros(len(truth))}
        validator.metrics.update_stats({
            **validator._process_batch(preds, batch),
            "target_cls": batch["cls"].numpy(), "target_img": np.unique(batch["cls"].numpy()),
            "conf": preds["conf"].numpy(), "pred_cls": preds["cls"].numpy(), "im_name": name,
        })
    validator.metrics.process()
    return float(validator.metrics.box.map50), float(validator.metrics.box.map)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validator_map_agrees_with_pycocotools(seed):
    rng = random.Random(seed)
    pages = {f"page_{i:03d}.png": synthetic_page(rng, f"page_{i:03d}.png") for i in range(25)}
    ours50, ours = ultralytics_map(pages)
    predictions = [{"file_name": name, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
                   for name, (_, _, found) in pages.items() for b, s in found]
    coco50, coco = coco_map({n: p[0] for n, p in pages.items()}, {n: p[1] for n, p in pages.items()}, predictions)
    assert 0.3 < coco < 0.95, "the synthetic predictions should be neither hopeless nor perfect"
    assert ours50 == pytest.approx(coco50, abs=TOLERANCE)
    assert ours == pytest.approx(coco, abs=TOLERANCE)

"""Stage `evaluate`: the trained model on the val split -> metrics.json, a PR curve, MLflow.

mAP comes from ultralytics' validator (COCO-style 101-point interpolation, IoU 0.50 and
0.50:0.95), run once on the whole val split with a low confidence threshold.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qblock import tracking
from qblock.config import Params
from qblock.errors import UserError
from qblock.yolo_env import prepare_ultralytics, ultralytics_dataset, use_cpu_threads


def write_pr_curve(curves_results: list, path: Path, points: int = 101) -> None:
    """The precision-recall curve (mean over classes) as a CSV that `dvc plots` draws."""
    recall, precision = curves_results[0][0], curves_results[0][1].mean(0)
    step = max(1, len(recall) // (points - 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["recall", "precision"])
        for r, p in zip(recall[::step], precision[::step], strict=True):
            writer.writerow([f"{r:.4f}", f"{p:.4f}"])


def print_metrics(console: Console, metrics: dict) -> None:
    table = Table(title="val metrics", show_header=True)
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in metrics.values()))
    console.print(table)


def run(params: Params, console: Console) -> dict:
    import mlflow

    root = Path.cwd()
    paths = params.paths
    prepare_ultralytics(root)
    from ultralytics import YOLO

    model_file = Path(paths.model_dir) / "best.pt"
    if not model_file.is_file():
        raise UserError(f"{model_file}: no trained model; run the train stage")
    split_dir, eval_dir = Path(paths.split_dir), Path(paths.eval_dir).resolve()
    shutil.rmtree(eval_dir, ignore_errors=True)
    model = YOLO(str(model_file))
    use_cpu_threads(model, params.train.cpu_threads)
    with ultralytics_dataset(Path(paths.export_dir), split_dir, root) as data_yaml:
        result = model.val(
            data=str(data_yaml), split="val", imgsz=params.train.imgsz, batch=params.evaluate.batch,
            conf=params.evaluate.conf, iou=params.evaluate.iou, device=params.train.device,
            project=str(eval_dir.parent), name=eval_dir.name, exist_ok=True, plots=True, verbose=False,
        )
    box = result.box
    metrics = {
        "mAP50": round(float(box.map50), 5),
        "mAP50-95": round(float(box.map), 5),
        "precision": round(float(box.mp), 5),
        "recall": round(float(box.mr), 5),
        "val_pages": sum(1 for line in (split_dir / "val.txt").read_text(encoding="utf-8").splitlines()
                         if line.strip()),
    }
    Path(paths.metrics_file).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plots_dir = Path(paths.plots_dir)
    write_pr_curve(box.curves_results, plots_dir / "pr_curve.csv")

    run_id = tracking.read_run_file(Path(paths.model_dir) / "run.json")
    with tracking.resume_run(params.mlflow, run_id):
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_artifact(paths.metrics_file)
        for picture in sorted(eval_dir.glob("*.png")):
            mlflow.log_artifact(str(picture), artifact_path="evaluate")
    print_metrics(console, metrics)
    return metrics


def main(params: Params, console: Console) -> None:
    run(params, console)

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
from qblock.dataset_yaml import write_dataset_yaml
from qblock.errors import UserError
from qblock.yolo_env import clear_label_caches, prepare_ultralytics, use_cpu_threads


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
    export_dir, eval_dir = Path(paths.export_dir), Path(paths.eval_dir).resolve()
    data_yaml = write_dataset_yaml(export_dir, Path(paths.split_dir), root / ".qblock" / "data")
    clear_label_caches(export_dir / "labels")
    shutil.rmtree(eval_dir, ignore_errors=True)
    model = YOLO(str(model_file))
    use_cpu_threads(model, params.train.cpu_threads)
    try:
        result = model.val(
            data=str(data_yaml), split="val", imgsz=params.train.imgsz, batch=params.evaluate.batch,
            conf=params.evaluate.conf, iou=params.evaluate.iou, device=params.train.device,
            project=str(eval_dir.parent), name=eval_dir.name, exist_ok=True, plots=True, verbose=False,
        )
    finally:
        clear_label_caches(export_dir / "labels")
    box = result.box
    metrics = {
        "mAP50": round(float(box.map50), 5),
        "mAP50-95": round(float(box.map), 5),
        "precision": round(float(box.mp), 5),
        "recall": round(float(box.mr), 5),
        "val_pages": _val_pages(data_yaml),
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


def _val_pages(data_yaml: Path) -> int:
    import yaml

    val_list = Path(yaml.safe_load(data_yaml.read_text(encoding="utf-8"))["val"])
    return sum(1 for line in val_list.read_text(encoding="utf-8").splitlines() if line.strip())


def main(params: Params, console: Console) -> None:
    run(params, console)

"""Stage `evaluate`: the trained model on the val split -> metrics.json, a PR curve, MLflow.

mAP comes from ultralytics' validator (COCO-style 101-point interpolation, IoU 0.50 and
0.50:0.95), run once on the whole val split with a low confidence threshold.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qblock import notify, registry, tracking
from qblock.config import Params
from qblock.errors import UserError
from qblock.problems import write_json
from qblock.worst_pages import draw_worst
from qblock.yolo_env import prepare_ultralytics, ultralytics_dataset, use_cpu_threads, without_coco_eval_notes


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


def val_fingerprint(export_dir: Path, val_images: list[str]) -> str:
    """A hash of the val pages: the list, each label file and each image."""
    digest = hashlib.sha256()
    for entry in val_images:
        image = export_dir / entry
        label = export_dir / "labels" / (image.stem + ".txt")
        digest.update(entry.encode("utf-8") + b"\0")
        for path in (label, image):
            digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"missing")
    return digest.hexdigest()[:16]


def measure(model_file: Path, params: Params, data_yaml: Path, out_dir: Path, plots: bool):
    """ultralytics' validator on the val split: the box metrics object.

    With ``plots``, its predictions are also kept (``predictions.json``, COCO format, original
    pixels), for the worst-pages picture and for checking mAP against an independent COCO tool.
    """
    from ultralytics import YOLO

    model = YOLO(str(model_file))
    use_cpu_threads(model, params.train.cpu_threads)
    with without_coco_eval_notes():
        result = model.val(
            data=str(data_yaml), split="val", imgsz=params.train.imgsz, batch=params.evaluate.batch,
            conf=params.evaluate.conf, iou=params.evaluate.iou, device=params.train.device,
            project=str(out_dir.parent), name=out_dir.name, exist_ok=True, plots=plots, verbose=False,
            save_json=plots,
        )
    return result.box


def score_of(box, metric: str) -> float:
    return {"mAP50": float(box.map50), "mAP50-95": float(box.map)}[metric]


def run(params: Params, console: Console) -> dict:
    import mlflow

    root = Path.cwd()
    paths = params.paths
    prepare_ultralytics(root)

    model_file = Path(paths.model_dir) / "best.pt"
    if not model_file.is_file():
        raise UserError(f"{model_file}: no trained model; run the train stage")
    export_dir, split_dir, eval_dir = Path(paths.export_dir), Path(paths.split_dir), Path(paths.eval_dir).resolve()
    shutil.rmtree(eval_dir, ignore_errors=True)
    run_id = tracking.read_run_file(Path(paths.model_dir) / "run.json")
    val_images = (split_dir / "val.txt").read_text(encoding="utf-8").split()
    val_hash = val_fingerprint(export_dir, val_images)
    with ultralytics_dataset(export_dir, split_dir, root) as data_yaml:
        box = measure(model_file, params, data_yaml, eval_dir, plots=True)
        metrics = {
            "mAP50": round(float(box.map50), 5),
            "mAP50-95": round(float(box.map), 5),
            "precision": round(float(box.mp), 5),
            "recall": round(float(box.mr), 5),
            "val_pages": len(val_images),
        }
        Path(paths.metrics_file).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        write_pr_curve(box.curves_results, Path(paths.plots_dir) / "pr_curve.csv")
        worst = draw_worst(export_dir, val_images, eval_dir / "predictions.json", eval_dir / "worst_val_pages.png")
        write_json(eval_dir / "val_page_errors.json", worst)

        def rescore(champion_run: str) -> float:
            console.print("evaluate: the champion was measured on other val data; measuring it again")
            with tempfile.TemporaryDirectory() as tmp:
                weights = mlflow.artifacts.download_artifacts(run_id=champion_run, artifact_path="model/best.pt",
                                                               dst_path=tmp)
                champion_box = measure(Path(weights), params, data_yaml, Path(tmp) / "val", plots=False)
                return score_of(champion_box, params.evaluate.champion_metric)

        with tracking.resume_run(params.mlflow, run_id):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            mlflow.set_tag("qblock.val_hash", val_hash)
            mlflow.log_artifact(paths.metrics_file)
            for picture in [*sorted(eval_dir.glob("*.png")), eval_dir / "val_page_errors.json"]:
                mlflow.log_artifact(str(picture), artifact_path="evaluate")
            version = registry.register(model_file, params.train.imgsz)
            decision = registry.decide_champion(version, params.evaluate.champion_metric,
                                                score_of(box, params.evaluate.champion_metric), val_hash, rescore)
    print_metrics(console, metrics)
    verdict = "[green]is the new champion[/]" if decision.promoted else "stays a challenger"
    console.print(f"evaluate: {registry.REGISTERED_MODEL} v{version} {verdict}: {decision.reason}")
    status = "the new champion" if decision.promoted else "not the champion"
    notify.run_finished(params.notify, metrics, f"{registry.REGISTERED_MODEL} v{version}, {status}", console)
    return metrics


def main(params: Params, console: Console) -> None:
    run(params, console)

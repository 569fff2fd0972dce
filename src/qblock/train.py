"""Stage `train`: ultralytics YOLO on the validated split, logged to one MLflow run.

The model goes to a fixed path (`models/best.pt`) and the MLflow run id to `models/run.json`,
so evaluate logs into the same run. ultralytics' own MLflow/DVC callbacks stay off
(`yolo_env`); qblock logs each epoch itself, into the pipeline's run.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from qblock import tracking
from qblock.config import ModelParams, Params
from qblock.errors import UserError
from qblock.yolo_env import prepare_ultralytics, ultralytics_dataset, use_cpu_threads

# ultralytics' train() arguments that qblock's `train` params pass through unchanged
_PASSTHROUGH = (
    "epochs", "imgsz", "batch", "nbs", "device", "workers", "patience", "seed", "optimizer", "lr0", "cos_lr",
    "warmup_epochs", "amp", "cache", "rect", "mosaic", "close_mosaic", "fliplr", "flipud", "scale",
    "translate", "degrees", "hsv_h", "hsv_s", "hsv_v", "mixup",
)


def model_source(params: ModelParams) -> str:
    """The weights file to start from, or the architecture to build from scratch."""
    if params.weights:
        weights = Path(params.weights)
        if not weights.is_file():
            raise UserError(
                f"model.weights: {weights} not found. qblock never downloads weights: get {weights.name} "
                f"(e.g. from the ultralytics releases page) on a machine with internet, put it at {weights}, "
                f"and track it with `dvc add {weights}`; or set model.weights=null to train from scratch."
            )
        return str(weights)
    return params.architecture


def dataset_fingerprint(export_dir: Path, split_dir: Path) -> str:
    """A hash of everything training reads: labels, split lists and image bytes."""
    digest = hashlib.sha256()
    files = sorted(export_dir.glob("labels/*.txt")) + sorted(export_dir.glob("images/*")) \
        + sorted(split_dir.glob("*.txt"))
    for path in files:
        digest.update(path.relative_to(path.parent.parent).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def epoch_logger(run_id: str):
    """An ultralytics callback that logs losses, val metrics and learning rates per epoch."""
    import mlflow

    finished = False

    def on_fit_epoch_end(trainer) -> None:
        nonlocal finished
        if finished:  # ultralytics' final eval of best.pt: evaluate logs those numbers
            return
        finished = bool(trainer.stop)
        values = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **trainer.metrics, **trainer.lr}
        metrics = {tracking.metric_name(k): float(v) for k, v in values.items()}
        mlflow.log_metrics(metrics, step=trainer.epoch + 1, run_id=run_id)

    return on_fit_epoch_end


def device_tagger(run_id: str):
    """An ultralytics callback that tags the run with the device it trains on, once."""
    import mlflow

    def on_train_epoch_start(trainer) -> None:
        if trainer.epoch == trainer.start_epoch:
            mlflow.MlflowClient().set_tag(run_id, "qblock.device", tracking.device_name(trainer.device))

    return on_train_epoch_start


def train_arguments(params: Params, data_yaml: Path) -> dict:
    train = asdict(params.train)
    args = {key: train[key] for key in _PASSTHROUGH}
    train_dir = Path(params.paths.train_dir).resolve()
    return args | {
        "data": str(data_yaml),
        "project": str(train_dir.parent),
        "name": train_dir.name,
        "exist_ok": True,
        "plots": True,
        "verbose": True,
    }


def run(params: Params, console: Console) -> Path:
    import mlflow

    root = Path.cwd()
    paths = params.paths
    prepare_ultralytics(root)
    from ultralytics import YOLO

    export_dir, split_dir, model_dir = Path(paths.export_dir), Path(paths.split_dir), Path(paths.model_dir)
    with ultralytics_dataset(export_dir, split_dir, root) as data_yaml:
        model = YOLO(model_source(params.model))
        run_id = tracking.start_run(params, dataset_fingerprint(export_dir, split_dir))
        console.print(f"train: MLflow run {run_id} in {tracking.tracking_uri(params.mlflow)}")
        model.add_callback("on_fit_epoch_end", epoch_logger(run_id))
        use_cpu_threads(model, params.train.cpu_threads)
        model.add_callback("on_train_epoch_start", device_tagger(run_id))
        try:
            model.train(**train_arguments(params, data_yaml))
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise

    best = Path(model.trainer.best)
    if not best.is_file():
        mlflow.end_run(status="FAILED")
        raise UserError(f"training ended without a model file at {best}")
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / "best.pt"
    shutil.copyfile(best, target)
    shutil.rmtree(best.parent, ignore_errors=True)  # checkpoints: models/best.pt is the one kept
    tracking.write_run_file(model_dir / "run.json", run_id, params.mlflow)
    mlflow.log_artifact(str(target), artifact_path="model")
    results = Path(paths.train_dir) / "results.csv"
    if results.is_file():
        mlflow.log_artifact(str(results), artifact_path="train")
    mlflow.end_run()
    console.print(f"train: model written to {target}")
    return target


def main(params: Params, console: Console) -> None:
    run(params, console)

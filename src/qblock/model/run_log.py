"""The pipeline's MLflow run: one per pipeline run, opened by train (params, data, code and library
versions, per-epoch metrics through ultralytics callbacks, the weights) and reopened by evaluate
(its val data, final metrics and reports)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qblock.config.compose import overrides_from_conf
from qblock.config.schema import MlflowParams, Params
from qblock.core import secrets
from qblock.core.errors import UserError
from qblock.core.machine import project_root
from qblock.model.mlflow_store import connect, tracking_uri


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, name + ".")
        else:
            out[name] = value
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def git_state() -> dict[str, str]:
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else False
    return {"git.commit": commit or "unknown", "git.dirty": str(dirty).lower()}


def run_name(params: Params, git: dict[str, str]) -> str:
    """A name people can tell apart and sort: the DVC experiment's name, else the short commit (+dirty),
    then the preset and the model: `a1b2c3d-desktop_4070-yolov8m`."""
    where = os.environ.get("DVC_EXP_NAME") or (
        git["git.commit"][:7] + ("+dirty" if git["git.dirty"] == "true" else "") if git["git.commit"] != "unknown"
        else "no-git")
    return f"{where}-{params.train.preset}-{params.model.name}"


def log_dataset(context: str, digest: str, pages: int, boxes: int, folders: dict[str, str]) -> None:
    """The pages a run trained on (``training``), was chosen on (``validation``) or tested on
    (``testing``), as an MLflow dataset: its digest is qblock's hash of them, its source the
    repository, commit and folders, so the UI's Dataset column groups runs on the same data."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    origin = _git("remote", "get-url", "origin") or project_root().as_posix()
    source = CodeDatasetSource({"repository": secrets.redact(origin), "commit": git_state()["git.commit"], **folders})
    name = {"training": "train pages", "validation": "val pages"}.get(context, "test pages")
    mlflow.log_input(MetaDataset(source, name=name, digest=digest[:36]), context=context,
                     tags={"pages": str(pages), "boxes": str(boxes)})


def start_run(params: Params, dataset_hash: str, imgsz: int | None = None) -> str:
    """Open the pipeline run (train calls this); return its id. ``imgsz``: the size it trains at, when
    few pages make it larger than train.imgsz (model/image_size.py)."""
    import mlflow

    experiment_id = connect(params.mlflow)
    tags = git_state() | {
        "qblock.preset": params.train.preset,
        "qblock.model": params.model.name,
        "qblock.dataset_hash": dataset_hash,
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    tags |= library_versions()
    try:
        tags["hydra.overrides"] = " ".join(overrides_from_conf(Path.cwd(), params)) or "none"
    except UserError as exc:  # no conf/ here (a bare params.yaml): say so rather than guess
        tags["hydra.overrides"] = f"unknown ({exc})"[:500]
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name(params, tags), tags=tags,
                           log_system_metrics=params.train.system_metrics)
    logged = {k: v for k, v in flatten(asdict(params)).items()  # what trains and judges a model, not where
              if not k.startswith(("paths.", "mlflow.", "notify."))}  # files go or who is told
    if imgsz is not None:
        logged["train.imgsz_trained"] = imgsz
    mlflow.log_params({k: str(v)[:500] for k, v in logged.items()})
    mlflow.set_tag("qblock.webhook_host", secrets.host(secrets.webhook_url(params.notify.webhook_url)))  # never the URL
    return run.info.run_id


def installed_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    import platform

    tags = {"versions.python": platform.python_version()}
    for package in ("qblock", "ultralytics", "torch", "mlflow", "dvc"):
        tags[f"versions.{package}"] = installed_version(package) or "not installed"
    return tags


def device_name(device) -> str:
    """'cpu (2 threads)' or 'cuda:0 (NVIDIA GeForce RTX 4070)': what a run really trained on."""
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def reopen_run(params: MlflowParams, run_id: str, fix: str, system_metrics: bool = False) -> None:
    """Make an interrupted training's run the active run again (status back to RUNNING).

    ``fix`` tells the user what to do when the run is gone from the store.
    """
    import mlflow

    connect(params)
    try:
        mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(f"MLflow run {run_id} of the interrupted training is not in {tracking_uri(params)}: {exc}. "
                        f"{fix}") from None


def abandon_run(params: MlflowParams, run_id: str) -> None:
    """Mark an interrupted training's run FAILED when its training starts over (if the run is still there)."""
    import mlflow

    connect(params)
    with contextlib.suppress(mlflow.exceptions.MlflowException):  # gone from the store: nothing to mark
        mlflow.MlflowClient().set_terminated(run_id, status="FAILED")


def resume_run(params: MlflowParams, run_id: str):
    """Reopen the pipeline run (evaluate calls this)."""
    import mlflow

    connect(params)
    try:
        return mlflow.start_run(run_id=run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(
            f"MLflow run {run_id} (from the train stage) is not in {tracking_uri(params)}: {exc}. "
            "Was the store moved? Rerun training with `dvc repro --force train`."
        ) from None


def write_run_file(path: Path, run_id: str, params: MlflowParams) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "experiment": params.experiment}, indent=2) + "\n",
                    encoding="utf-8")


def read_run_file(path: Path) -> str:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["run_id"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: cannot read the MLflow run id written by the train stage ({exc})") from None


EPOCH = "epoch/"  # per-epoch curves: the last epoch's val figure is not the model's (evaluate's, of best.pt)
EPOCH_MAP50 = EPOCH + "val_mAP50"


def metric_name(key: str) -> str:
    """ultralytics' per-epoch keys -> MLflow names that say they are per epoch: 'metrics/mAP50(B)' ->
    'epoch/val_mAP50', 'train/box_loss' -> 'epoch/train_box_loss', 'lr/pg0' -> 'epoch/lr_pg0'."""
    if key.startswith("metrics/"):
        key = "val/" + key[len("metrics/"):]
    return EPOCH + key.replace("(B)", "").replace("(", "_").replace(")", "").replace("/", "_")


def epoch_logger(run_id: str) -> Callable[[Any], None]:
    """An ultralytics callback that logs losses, val metrics and learning rates per epoch."""
    import mlflow

    finished = False

    def on_fit_epoch_end(trainer) -> None:
        nonlocal finished
        if finished:  # ultralytics' final eval of best.pt: evaluate logs those numbers
            return
        finished = bool(trainer.stop)
        values = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **trainer.metrics, **trainer.lr}
        metrics = {metric_name(k): float(v) for k, v in values.items()}
        mlflow.log_metrics(metrics, step=trainer.epoch + 1, run_id=run_id)

    return on_fit_epoch_end


def device_tagger(run_id: str) -> Callable[[Any], None]:
    """An ultralytics callback that tags the run, once, with the device it trains on and the optimizer and
    learning rate it really took (`optimizer: auto` picks its own and ignores `train.lr0`)."""
    import mlflow

    def on_train_epoch_start(trainer) -> None:
        if trainer.epoch == trainer.start_epoch:
            client = mlflow.MlflowClient()
            client.set_tag(run_id, "qblock.device", device_name(trainer.device))
            if (used := optimizer_used(trainer)) is not None:
                client.set_tag(run_id, "qblock.optimizer", used)

    return on_train_epoch_start


def optimizer_used(trainer) -> str | None:
    """'AdamW, lr 0.002, momentum 0.9': the optimizer ultralytics built, at its starting rate."""
    optimizer = getattr(trainer, "optimizer", None)
    if optimizer is None or not optimizer.param_groups:
        return None
    group = optimizer.param_groups[0]
    rate = group.get("initial_lr", group.get("lr"))
    momentum = group.get("momentum", (group.get("betas") or (None,))[0])
    return f"{type(optimizer).__name__}, lr {rate:g}" + (f", momentum {momentum:g}" if momentum is not None else "")


def logged_steps(run_id: str, metric: str) -> set[int]:
    import mlflow

    return {m.step for m in mlflow.MlflowClient().get_metric_history(run_id, metric)}


def log_step(run_id: str, values: dict[str, float], step: int) -> None:
    import mlflow

    mlflow.log_metrics(values, step=step, run_id=run_id)


def fail_active_run() -> None:
    import mlflow

    mlflow.end_run(status="FAILED")


def finish_training(model_file: Path, results_csv: Path) -> None:
    """Log the trained weights (and the epoch table) in the active run, and end it."""
    import mlflow

    mlflow.log_artifact(str(model_file), artifact_path="model")
    if results_csv.is_file():
        mlflow.log_artifact(str(results_csv), artifact_path="train")
    mlflow.end_run()


def log_evaluation(metrics: dict[str, float], val_hash: str, metrics_file: Path, files: list[Path]) -> None:
    """Final metrics, the val data's hash, metrics.json and the evaluation's files, in the active run."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    mlflow.set_tag("qblock.val_hash", val_hash)
    mlflow.log_artifact(str(metrics_file))
    for path in files:
        mlflow.log_artifact(str(path), artifact_path="evaluate")


def download_model(run_id: str, folder: Path) -> Path:
    """A run's trained weights (``model/best.pt``), downloaded into ``folder``."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model/best.pt",
                                                    dst_path=str(folder)))

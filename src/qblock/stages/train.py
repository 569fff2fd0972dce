"""Stage `train`: ultralytics YOLO on the validated split, logged to one MLflow run.

A training that is killed (power cut, Ctrl+C, a closed laptop lid) continues from its last
epoch on the next `dvc repro`, in the same MLflow run, unless the params or the data changed.

The model goes to a fixed path (`models/best.pt`) and the MLflow run id to `models/run.json`,
so evaluate logs into the same run. ultralytics' own MLflow/DVC callbacks stay off
(`yolo_env`); qblock logs each epoch itself, into the pipeline's run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from qblock.config.schema import ModelParams, Params
from qblock.core.errors import UserError
from qblock.data.yolo_folder import split_counts, split_list
from qblock.model import checkpoints, mlflow_store, run_log
from qblock.model.image_size import largest_box, training_size
from qblock.model.train_progress import LOG_NAME, EpochReporter, ultralytics_to_file
from qblock.model.yolo_env import average_weights_over, prepare_ultralytics, ultralytics_dataset, use_cpu_threads

CHECKPOINTS = ".qblock/checkpoints"
BASE_PREFIX = "qblock-base-"  # weights/qblock-base-<model>.pt: the base model pretrain/ makes
WEIGHTS_DIR = "weights"  # pretrained .pt files (`qblock weights fetch`), DVC-tracked; a dependency of this stage

def model_source(params: ModelParams) -> tuple[str, str]:
    """The weights file to start from, or the architecture to build from scratch, and why (one line).

    ``weights: auto`` means weights/<name>.pt when it is there (`qblock weights fetch <name>`: COCO),
    else qblock's base model weights/qblock-base-<name>.pt (pretrain/: exam pages and demo workbooks),
    else from scratch; a path means that file, and it must be there.
    """
    if params.weights == "auto":
        coco, base = Path(WEIGHTS_DIR) / f"{params.name}.pt", Path(WEIGHTS_DIR) / f"{BASE_PREFIX}{params.name}.pt"
        if coco.is_file():
            return str(coco), "pretrained (model.weights: auto found COCO weights)"
        if base.is_file():
            return str(base), "qblock's base model: exam and workbook pages, weights/README.md"
        return params.architecture, (f"from scratch: neither {coco.as_posix()} nor {base.as_posix()} is here; "
                                     f"a few labeled pages then teach much less")
    if params.weights:
        weights = Path(params.weights)
        if not weights.is_file():
            raise UserError(
                f"model.weights: {weights} not found. The pipeline never downloads weights: fetch them once with "
                f"`qblock weights fetch {weights.stem}`, or get {weights.name} from the ultralytics releases page "
                f"on a machine with internet, put it at {weights} and run `dvc add {weights}`; or set "
                f"model.weights=null to train from scratch."
            )
        return str(weights), "model.weights"
    return params.architecture, "from scratch: model.weights is null"


def dataset_fingerprint(export_dir: Path, split_dir: Path) -> str:
    """A hash of everything training reads: labels, split lists and image bytes."""
    digest = hashlib.sha256()
    files = sorted(export_dir.glob("labels/*.txt")) + sorted(export_dir.glob("images/*")) \
        + sorted(split_dir.glob("*.txt"))
    for path in files:
        digest.update(path.relative_to(path.parent.parent).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def train_arguments(params: Params, data_yaml: Path, save_dir: Path, imgsz: int) -> dict:
    """ultralytics' train() arguments: the preset's, at the size ``page_size`` chose."""
    return params.train.ultralytics_arguments() | {
        "imgsz": imgsz,
        "data": str(data_yaml),
        "project": str(save_dir.parent.resolve()),
        "name": save_dir.name,
        "exist_ok": True,
        "verbose": True,
    }


def page_size(params: Params, export_dir: Path, train_pages: list[str]) -> tuple[int, str | None]:
    """The size to train at (model/image_size.py) and, when it is not train.imgsz, why."""
    train = params.train
    for_pages = training_size(train, len(train_pages))
    largest = largest_box(export_dir, train_pages)
    size = training_size(train, len(train_pages), largest)
    if size < for_pages and largest:
        return size, (f"seen at {size} px, not {for_pages}: the training pages' large questions span {largest:.2f} of "
                      f"a page, {largest * for_pages:.0f} px at {for_pages}, beyond train.box_reach {train.box_reach} "
                      "px (a YOLOv8 head's boxes stop short of that: docs/configuration.md)")
    if size != train.imgsz:
        return size, (f"{len(train_pages)} training pages, seen at {size} px: train.imgsz {train.imgsz} is for "
                      f"{train.full_pages} pages or more, fewer are seen larger at the same cost (up to "
                      f"train.imgsz_max {train.imgsz_max})")
    return size, None


def checkpoint_dir(params: Params, dataset_hash: str) -> Path:
    """Where training keeps its checkpoints: one folder per (model, train params, data).

    It lives outside DVC's outputs (which `dvc repro` deletes before a stage runs), so a killed
    training is still there for the next run to continue; any change of params or data means
    another folder, so a resumed training is always the same training.
    """
    key = json.dumps({"model": asdict(params.model), "start": model_source(params.model)[0],
                      "train": asdict(params.train), "data": dataset_hash}, sort_keys=True)
    return Path(CHECKPOINTS) / hashlib.sha256(key.encode()).hexdigest()[:12]


def _discard_other_checkpoints(keep: Path, console: Console) -> None:
    for folder in Path(CHECKPOINTS).glob("*"):
        if folder.is_dir() and folder.name != keep.name:
            console.print(f"train: discarding {folder}, an unfinished training with other params or data")
            shutil.rmtree(folder, ignore_errors=True)


def _publish_run_folder(save_dir: Path, train_dir: Path) -> None:
    """Copy the training table, curves and args (not the checkpoints) to the DVC output folder."""
    shutil.rmtree(train_dir, ignore_errors=True)
    train_dir.mkdir(parents=True)
    for item in save_dir.iterdir():
        if item.is_file():
            shutil.copyfile(item, train_dir / item.name)


def run(params: Params, console: Console) -> Path:
    root = Path.cwd()
    paths = params.paths
    prepare_ultralytics(root)
    from ultralytics import YOLO

    export_dir, split_dir, model_dir = Path(paths.export_dir), Path(paths.split_dir), Path(paths.model_dir)
    with ultralytics_dataset(export_dir, split_dir, root) as data_yaml:
        dataset_hash = dataset_fingerprint(export_dir, split_dir)
        save_dir = checkpoint_dir(params, dataset_hash)
        _discard_other_checkpoints(save_dir, console)
        last, state_file = save_dir / "weights" / "last.pt", save_dir / "qblock-run.json"
        train_pages = split_list(split_dir, "train") or []
        size, why_size = page_size(params, export_dir, train_pages)
        arguments = train_arguments(params, data_yaml, save_dir, size)
        interrupted = last.is_file() and state_file.is_file()
        done = checkpoints.epochs_done(last) if interrupted else None
        if interrupted and done is None:
            console.print(f"train: {last} cannot be resumed from (cut off while it was written, or damaged): "
                          "starting the training over")
            run_log.abandon_run(params.mlflow, run_log.read_run_file(state_file))
        if done is not None:
            run_id = run_log.read_run_file(state_file)
            run_log.reopen_run(params.mlflow, run_id, f"Delete {save_dir} to start training over.",
                                params.train.system_metrics)
            model = YOLO(str(last))
            _align_with_checkpoint(save_dir, done, run_id)
            console.print(f"train: resuming the interrupted training from epoch {done + 1} of "
                          f"{params.train.epochs} ({last}); params and data are unchanged")
        else:
            shutil.rmtree(save_dir, ignore_errors=True)
            source, why = model_source(params.model)
            console.print(f"train: starting from {source} ({why})")
            if why_size:
                console.print(f"train: {why_size}")
            model = YOLO(source)
            run_id = run_log.start_run(params, dataset_hash, size if size != params.train.imgsz else None)
            run_log.log_dataset("training", dataset_hash, *split_counts(export_dir, train_pages),
                                 {"export_dir": paths.export_dir, "split": f"{paths.split_dir}/train.txt"})
            save_dir.mkdir(parents=True)
            run_log.write_run_file(state_file, run_id, params.mlflow)
        console.print(f"train: MLflow run {run_id} in {mlflow_store.tracking_uri(params.mlflow)}")
        model.add_callback("on_fit_epoch_end", run_log.epoch_logger(run_id))
        use_cpu_threads(model, params.train.cpu_threads)
        average_weights_over(model, params.train.ema_tau)
        model.add_callback("on_train_epoch_start", run_log.device_tagger(run_id))
        reporter = EpochReporter(console, params.train.epochs, (done or 0) + 1)
        model.add_callback("on_fit_epoch_end", reporter)
        console.print(f"train: ultralytics' own output goes to {Path(paths.train_dir) / LOG_NAME}")
        try:
            with ultralytics_to_file(save_dir / LOG_NAME):
                model.train(**arguments, resume=str(last) if done is not None else False,
                            trainer=checkpoints.trainer_for(model, params.train.device))
        except BaseException as exc:
            run_log.fail_active_run()
            if _out_of_gpu_memory(exc):
                raise UserError(out_of_memory_advice(params)) from None
            raise
        finally:
            reporter.close()

    best = Path(model.trainer.best)
    if not best.is_file():
        run_log.fail_active_run()
        raise UserError(f"training ended without a model file at {best}")
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / "best.pt"
    shutil.copyfile(best, target)
    _publish_run_folder(save_dir, Path(paths.train_dir))
    run_log.write_run_file(model_dir / "run.json", run_id, params.mlflow)
    run_log.finish_training(target, Path(paths.train_dir) / "results.csv")
    shutil.rmtree(save_dir, ignore_errors=True)  # finished: nothing left to resume
    console.print(f"train: model written to {target}")
    return target


def _out_of_gpu_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "CUDA out of memory" in str(exc)


def out_of_memory_advice(params: Params) -> str:
    t = params.train
    lower = f"train.batch={t.batch // 2}" if t.batch > 1 else "train.batch=4"
    return (f"train: the GPU ran out of memory (model {params.model.name}, imgsz {t.imgsz}, batch {t.batch}). "
            f"Lower the batch: `dvc exp run -S {lower}` (or `-S train.batch=-1`: ultralytics picks the largest "
            f"batch that fits in 60% of the GPU's memory), or the image size (`-S train.imgsz={t.imgsz * 3 // 4}`); "
            f"close other programs using the GPU. The next run starts over from epoch 1 with the new settings.")


def _align_with_checkpoint(save_dir: Path, done: int, run_id: str) -> None:
    """Make results.csv and the MLflow run agree with a checkpoint of ``done`` epochs.

    ultralytics appends an epoch's row to results.csv just before it saves last.pt, and qblock
    logs the epoch to MLflow just after. A kill between the two would leave a row the resumed
    training writes again, or an epoch MLflow never heard of: trim the one, fill in the other.
    """
    import csv

    results = save_dir / "results.csv"
    if not results.is_file():
        return
    lines = results.read_text(encoding="utf-8").splitlines()[: done + 1]
    results.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    logged = run_log.logged_steps(run_id, run_log.EPOCH_MAP50)
    for row in csv.DictReader(lines):
        step = int(float(row["epoch"]))
        if step not in logged:
            values = {run_log.metric_name(k.strip()): float(v) for k, v in row.items()
                      if k.strip() not in ("epoch", "time") and v.strip()}
            run_log.log_step(run_id, values, step)


def main(params: Params, console: Console) -> None:
    run(params, console)

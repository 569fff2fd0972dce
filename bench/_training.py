"""Shared by the training benchmarks: the demo data exported and split, and an epoch clock."""

from __future__ import annotations

import os
import time
from pathlib import Path


def prepare_demo(work: Path, export_dir: Path | None = None, split_dir: Path | None = None) -> tuple[Path, Path]:
    """The built-in demo collection (`qblock demo-data`: 20 workbooks x 4 pages) through export, split and validate."""
    from _harness import project_params
    from rich.console import Console

    from qblock.stages import export, split, validate

    params = project_params()
    from qblock.labeling.demo_data import write_demo_dataset

    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    export_dir, split_dir = export_dir or work / "yolo", split_dir or work / "split"
    if not (work / "app" / "documents").is_dir():
        write_demo_dataset(work / "app", seed=0)
    export.run(work / "app", export_dir, params.export, work / "reports" / "export.json", quiet)
    split.run(export_dir, split_dir, params.split, quiet)
    validate.run(export_dir, split_dir, work / "reports", 0, quiet, work / "validated.json")
    return export_dir, split_dir


# workbooks x pages per source: the demo's 80 pages (as make demo), and 96 typeset ones (16 workbooks, so that
# the split by workbook puts more than one in val)
SOURCE_SIZES = {"demo": (20, 4), "typeset": (16, 6)}


def prepare_source(folder: Path, source: str, size: tuple[int, int] | None = None) -> None:
    """`qblock demo-data` pages (``source``: demo, drawn; or typeset) under ``folder/app``, exported,
    split and validated into ``folder/yolo`` and ``folder/split``; kept when already there (the same
    seed gives the same pages). ``size``: (workbooks, pages each) instead of the source's own."""
    if (folder / "split" / "val.txt").is_file():
        return
    documents, pages = size or SOURCE_SIZES[source]
    if not (folder / "app" / "documents").is_dir():
        if source == "typeset":
            from qblock.labeling.typeset_pages import write_typeset_dataset

            write_typeset_dataset(folder / "app", documents, pages, seed=0)
        else:
            from qblock.labeling.demo_data import write_demo_dataset

            write_demo_dataset(folder / "app", documents, pages, seed=0)
    prepare_demo(folder, folder / "yolo", folder / "split")


def new_workbooks(work: Path, data: str, seed: int) -> Path:
    """3 new workbooks of 8 pages drawn with ``seed`` (styles of their own), exported; every page listed as val.
    Their boxes are drawn by the training collection's labeler (the same margin round a question): the
    person who labeled the training pages judges the new crops by their own convention."""
    from _harness import project_params
    from rich.console import Console

    from qblock.stages import export

    folder = work / f"{data}-new-{seed}"
    if (folder / "split" / "val.txt").is_file():
        return folder
    if data == "typeset":
        from qblock.labeling.typeset_pages import write_typeset_dataset

        write_typeset_dataset(folder / "app", 3, 8, seed=seed)
    else:
        from qblock.labeling.demo_data import write_demo_dataset

        write_demo_dataset(folder / "app", 3, 8, seed=seed, labeler_seed=0)  # new looks, the same person's boxes
    export.run(folder / "app", folder / "yolo", project_params().export, folder / "export.json",
               Console(file=open(os.devnull, "w")))  # noqa: SIM115
    listed = "".join(f"images/{p.name}\n" for p in sorted((folder / "yolo" / "images").iterdir()))
    (folder / "split").mkdir(parents=True, exist_ok=True)
    for side in ("train", "val"):  # train is there only because the dataset file wants one
        (folder / "split" / f"{side}.txt").write_text(listed)
    return folder


def crop_rate_on(weights: Path, params, pages: Path, side: str, out: Path, conf: float, rule=None) -> dict:
    """mAP50 and the crop figures of ``weights`` on one side of a collection's split (``pages``: its folder, with
    yolo/ and split/), at the threshold ``conf`` and with ``rule``'s ink snapping (None: none), as evaluate
    scores its test split."""
    from qblock.data.yolo_folder import split_list
    from qblock.model.yolo_env import ultralytics_dataset
    from qblock.quality.crops import crop_metrics_at, load_val_pages, snap_pages
    from qblock.stages.evaluate import measure

    with ultralytics_dataset(pages / "yolo", pages / "split", out, test=side == "test") as data_yaml:
        box = measure(weights, params, data_yaml, out, plots=False, split=side)
    found = load_val_pages(pages / "yolo", split_list(pages / "split", side) or [], out / "predictions.json")
    if rule is not None:
        found = snap_pages(pages / "yolo", found, rule)
    return {"mAP50": round(float(box.map50), 5), **crop_metrics_at(found, conf)}


def train_as_qblock(params, export_dir: Path, split_dir: Path, folder: Path, threads: int | None = None,
                    model=None, arguments: dict | None = None) -> tuple[Path, float, list[dict]]:
    """One training as `qblock train` runs it (its start from model.weights, its EMA, its arguments), quiet and
    without plots, into ``folder/train``: best.pt, the training's seconds, and each epoch's val mAP.
    ``model`` and ``arguments``: another model and arguments (ultralytics' own defaults, say) instead."""
    from ultralytics import YOLO

    from qblock.data.yolo_folder import split_list
    from qblock.model.yolo_env import average_weights_over, prepare_ultralytics, ultralytics_dataset, use_cpu_threads
    from qblock.stages.train import model_source, page_size, train_arguments

    prepare_ultralytics(folder)
    if threads is not None:
        params.train.cpu_threads = threads
    clock = EpochClock()
    with ultralytics_dataset(export_dir, split_dir, folder) as data_yaml:
        if model is None:
            model = YOLO(model_source(params.model)[0])
            average_weights_over(model, params.train.ema_tau)
            size, _ = page_size(params, export_dir, split_list(split_dir, "train") or [])
            arguments = train_arguments(params, data_yaml, folder / "train", size)
        use_cpu_threads(model, params.train.cpu_threads)
        clock.attach(model)
        started = time.perf_counter()
        model.train(**(arguments or {}) | {"data": str(data_yaml), "plots": False, "verbose": False})
        seconds = time.perf_counter() - started
    return folder / "train" / "weights" / "best.pt", seconds, clock.epochs


class EpochClock:
    """ultralytics callbacks recording, per epoch, seconds since training started and val mAP."""

    def __init__(self) -> None:
        self.start = 0.0
        self.epochs: list[dict] = []

    def attach(self, model) -> None:
        model.add_callback("on_train_start", self._on_start)
        model.add_callback("on_fit_epoch_end", self._on_epoch)

    def _on_start(self, trainer) -> None:
        self.start = time.perf_counter()

    def _on_epoch(self, trainer) -> None:
        if len(self.epochs) >= trainer.epochs:  # ultralytics' extra call for the final best.pt check
            return
        self.epochs.append({"epoch": trainer.epoch + 1, "seconds": time.perf_counter() - self.start,
                            "mAP50": float(trainer.metrics.get("metrics/mAP50(B)", 0.0)),
                            "mAP50-95": float(trainer.metrics.get("metrics/mAP50-95(B)", 0.0))})

    def first_reaching(self, key: str, value: float) -> dict | None:
        return next((e for e in self.epochs if e[key] >= value), None)

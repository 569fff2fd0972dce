"""Stage `evaluate`: the trained model on the val and test splits -> metrics.json, a PR curve, MLflow.

mAP comes from ultralytics' validator (COCO-style 101-point interpolation, IoU 0.50 and
0.50:0.95), run once on each whole split with a low confidence threshold.

Val is where choices are made: the confidence threshold propose uses, whether ink snapping is
kept, the champion (and, in training, the best epoch). Test is measured last, with the choices
val made, and read by nothing: its figures (`test_crop_rate`, ...) are the headline, what a new
workbook gets.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qblock.config.schema import Params
from qblock.core import metric_names as names
from qblock.core import notify
from qblock.core.errors import UserError
from qblock.data.problems import write_json
from qblock.data.yolo_folder import file_names, read_manifest, split_counts, split_list
from qblock.model import champion, registry, run_log
from qblock.model.champion import Decision
from qblock.model.image_size import imgsz_of, trained_imgsz
from qblock.model.train_progress import LOG_NAME, ultralytics_to_file
from qblock.model.yolo_env import prepare_ultralytics, ultralytics_dataset, use_cpu_threads, without_coco_eval_notes
from qblock.quality import ink_snap, outcomes
from qblock.quality.crops import (
    ValPage,
    crop_metrics,
    crop_metrics_at,
    crop_rate_by_document,
    found_at,
    load_val_pages,
    snap_pages,
)
from qblock.quality.ink_snap import SnapRule
from qblock.quality.worst_pages import draw_worst


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


NO_TEST = ("no test split (split.test_fraction, 5 documents or more): these are val's figures, where the epoch, "
           "threshold and snapping were chosen; a new workbook will likely get less")


def documents_file(eval_dir: str | Path) -> Path:
    """Where evaluate writes each test document's crop rate."""
    return Path(eval_dir) / "test" / "crop_rate_by_document.json"


def print_metrics(console: Console, metrics: dict, eval_dir: str | Path) -> None:
    """One metric a row, test beside val: readable at 80 columns, however many metrics there are; then
    the test crop rate's worst and best workbook (each one's in ``eval_dir``)."""
    tested = names.TEST_PAGES in metrics
    table = Table(title="metrics: test = new workbooks, val = where the choices were made" if tested
                  else "val metrics")
    table.add_column("metric", no_wrap=True)
    if tested:
        table.add_column("test", justify="right")
    table.add_column("val", justify="right")

    def shown(value) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    for name, value in metrics.items():
        if name.startswith(names.TEST):
            continue
        label = "pages" if name == names.VAL_PAGES else name
        twin = names.TEST_PAGES if name == names.VAL_PAGES else names.TEST + name
        table.add_row(label, *([shown(metrics[twin]) if twin in metrics else ""] if tested else []), shown(value))
    console.print(table)
    if not tested:
        console.print(f"[yellow]note[/]: {NO_TEST}")
    elif names.TEST_DOCUMENTS in metrics:
        count = metrics[names.TEST_DOCUMENTS]
        console.print(f"test crop rate of each workbook: {metrics[names.TEST_WORST_DOCUMENT]:.2f} to "
                      f"{metrics[names.TEST_BEST_DOCUMENT]:.2f} ({count} workbook{'' if count == 1 else 's'}, in "
                      f"{documents_file(eval_dir).as_posix()}): your next one may land anywhere near that")


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


def measure(model_file: Path, params: Params, data_yaml: Path, out_dir: Path, plots: bool, split: str = "val"):
    """ultralytics' validator on one split (val unless said): the box metrics object.

    Its predictions are kept too (``out_dir/predictions.json``, COCO format, original pixels), for
    the crop rate, the worst-pages picture and checking mAP against an independent COCO tool.
    """
    from ultralytics import YOLO

    model = YOLO(str(model_file))
    use_cpu_threads(model, params.train.cpu_threads)
    with without_coco_eval_notes(), ultralytics_to_file(out_dir / LOG_NAME):  # its own output: a file
        result = model.val(
            data=str(data_yaml), split=split, imgsz=trained_imgsz(model) or params.train.imgsz,
            batch=params.evaluate.batch,
            conf=params.evaluate.conf, iou=params.evaluate.iou, device=params.train.device,
            project=str(out_dir.parent), name=out_dir.name, exist_ok=True, plots=plots, verbose=False,
            save_json=True,
        )
    return result.box


def box_scores(box) -> dict[str, float]:
    """mAP50 and mAP50-95 of ultralytics' box metrics, as metrics.json and MLflow record them."""
    return {names.MAP50: round(float(box.map50), 5), names.MAP50_95: round(float(box.map), 5)}


def score_of(box, pages: list[ValPage], metric: str) -> float:
    """The champion metric, as recorded: the same weights measured again tie with their record, never
    beat it by a digit the record rounded off."""
    if metric == names.CROP_RATE:
        return crop_metrics(pages)[names.CROP_RATE]
    return box_scores(box)[metric]


def choose_snapping(export_dir: Path, pages: list[ValPage], rule: SnapRule) -> tuple[list[ValPage], bool, dict]:
    """The val pages as propose will crop them: ink-snapped when that raises the crop rate; whether
    it did; the crop metrics without snapping."""
    plain = crop_metrics(pages)
    if not rule.active:
        return pages, False, plain
    snapped = snap_pages(export_dir, pages, rule)
    if crop_metrics(snapped)[names.CROP_RATE] > plain[names.CROP_RATE]:
        return snapped, True, plain
    return pages, False, plain


def documents_of_pages(export_dir: Path) -> dict[str, str]:
    """The export's pages (split-list entries, images/NAME) and the document each belongs to."""
    manifest = read_manifest(export_dir)
    return {f"images/{image}": name for name, data in manifest.documents.items()
            for image, _ in file_names(name, data)}


def measure_test(model_file: Path, params: Params, data_yaml: Path, test_images: list[str], out_dir: Path,
                 conf: float, snap: SnapRule | None) -> dict:
    """The test split measured with val's choices (its threshold, its snapping): the test_ metrics."""
    export_dir = Path(params.paths.export_dir)
    box = measure(model_file, params, data_yaml, out_dir, plots=False, split="test")
    pages = load_val_pages(export_dir, test_images, out_dir / "predictions.json")
    if snap is not None:
        pages = snap_pages(export_dir, pages, snap)
    crops = crop_metrics_at(pages, conf)
    by_document = crop_rate_by_document(pages, conf, documents_of_pages(export_dir))
    write_json(documents_file(out_dir.parent), by_document)  # out_dir: the evaluate folder's test/
    return {
        names.TEST + names.CROP_RATE: crops[names.CROP_RATE],
        **{names.TEST + name: value for name, value in box_scores(box).items()},
        names.TEST + names.FALSE_CROPS: crops[names.FALSE_CROPS],
        **{names.TEST + name: value for name, value in found_at(pages, conf).items()},
        names.TEST_PAGES: len(pages),
        names.TEST_DOCUMENTS: len(by_document),
        names.TEST_WORST_DOCUMENT: min(by_document.values(), default=0.0),
        names.TEST_BEST_DOCUMENT: max(by_document.values(), default=0.0),
    }


def write_reports(box, params: Params, pages: list[ValPage], eval_dir: Path, unsnapped: dict, crops: dict,
                  tested: dict) -> dict:
    """metrics.json (a DVC metric: test's figures first), the PR curve (a DVC plot), the worst val pages;
    return the metrics. ``crops``: the val pages' crop metrics and threshold."""
    paths = params.paths
    metrics = {
        **tested,
        **box_scores(box),
        **found_at(pages, crops[names.CONF_THRESHOLD]),  # at the threshold propose uses, not ultralytics' own
        **crops,
        names.CROP_RATE_UNSNAPPED: unsnapped[names.CROP_RATE],
        names.VAL_PAGES: len(pages),
    }
    Path(paths.metrics_file).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    write_pr_curve(box.curves_results, Path(paths.plots_dir) / "pr_curve.csv")
    worst = draw_worst(Path(paths.export_dir), pages, eval_dir / "worst_val_pages.png",
                       conf=metrics[names.CONF_THRESHOLD])
    write_json(eval_dir / "val_page_errors.json", worst)
    for drawn_at_0_001 in ("confusion_matrix.png", "confusion_matrix_normalized.png"):  # ultralytics' own
        (eval_dir / drawn_at_0_001).unlink(missing_ok=True)
    outcomes.draw(outcomes.count(pages, metrics[names.CONF_THRESHOLD]), eval_dir / "confusion_matrix.png")
    return metrics


def headline(metrics: dict, decision: Decision) -> str:
    """The run in one line, for the MLflow run's and model version's descriptions."""
    def figures(prefix: str) -> str:
        return " · ".join(f"{key} {metrics[prefix + key]:.3f}" for key in (names.MAP50, names.MAP50_95, names.CROP_RATE)
                          if prefix + key in metrics)

    verdict = "champion" if decision.promoted else "challenger"
    val = f"{figures('')} on {metrics.get(names.VAL_PAGES, '?')} val pages"
    if names.TEST_PAGES in metrics:
        val = f"{figures(names.TEST)} on {metrics[names.TEST_PAGES]} test pages (val: {val})"
    return f"{val} · v{decision.version} {verdict}: {decision.reason}"


def register_and_judge(params: Params, run_id: str, metrics: dict, val_hash: str, eval_dir: Path,
                       score: float, rescore: Callable[[str], float], snap: SnapRule | None) -> Decision:
    """Log the evaluation into the pipeline's run, register the model, decide the champion."""
    paths = params.paths
    export_dir, split_dir = Path(paths.export_dir), Path(paths.split_dir)
    with run_log.resume_run(params.mlflow, run_id):
        for split, context in (("val", "validation"), ("test", "testing")):
            entries = split_list(split_dir, split)
            if entries:
                digest = val_hash if split == "val" else val_fingerprint(export_dir, entries)
                run_log.log_dataset(context, digest, *split_counts(export_dir, entries),
                                    {"export_dir": paths.export_dir, "split": f"{paths.split_dir}/{split}.txt"})
        evaluation_files = [*sorted(eval_dir.glob("*.png")), *sorted(eval_dir.glob("*.json"))]
        run_log.log_evaluation(metrics, val_hash, Path(paths.metrics_file), evaluation_files)
        model_file = Path(paths.model_dir) / "best.pt"
        version = registry.register(model_file, imgsz_of(model_file, params.train.imgsz),
                                    metrics[names.CONF_THRESHOLD], snap.to_json() if snap else None)
        decision = champion.decide(version, params.evaluate.champion_metric, score, val_hash,
                                   registry.current_champion(), rescore)
        registry.record_decision(decision, headline(metrics, decision), metrics)
    return decision


def announce(params: Params, metrics: dict, decision: Decision, console: Console) -> None:
    print_metrics(console, metrics, params.paths.eval_dir)
    verdict = "[green]is the new champion[/]" if decision.promoted else "stays a challenger"
    model = f"{champion.REGISTERED_MODEL} v{decision.version}"
    console.print(f"evaluate: {model} {verdict}: {decision.reason}")
    status = "the new champion" if decision.promoted else "not the champion"
    notify.run_finished(params.notify, metrics, f"{model}, {status}", console)


def run(params: Params, console: Console) -> dict:
    root = Path.cwd()
    paths = params.paths
    prepare_ultralytics(root)

    model_file = Path(paths.model_dir) / "best.pt"
    if not model_file.is_file():
        raise UserError(f"{model_file}: no trained model; run the train stage")
    export_dir, split_dir, eval_dir = Path(paths.export_dir), Path(paths.split_dir), Path(paths.eval_dir).resolve()
    shutil.rmtree(eval_dir, ignore_errors=True)
    run_id = run_log.read_run_file(Path(paths.model_dir) / "run.json")
    val_images = split_list(split_dir, "val") or []
    val_hash = val_fingerprint(export_dir, val_images)
    metric = params.evaluate.champion_metric
    test_images = split_list(split_dir, "test") or []
    with ultralytics_dataset(export_dir, split_dir, root, test=bool(test_images)) as data_yaml:
        box = measure(model_file, params, data_yaml, eval_dir, plots=True)
        rule = ink_snap.learn_from_folder(export_dir, split_list(split_dir, "train") or [])
        pages, snapping, unsnapped = choose_snapping(
            export_dir, load_val_pages(export_dir, val_images, eval_dir / "predictions.json"), rule)
        write_json(eval_dir / "ink_snap.json", {"kept": snapping, "unsnapped": unsnapped,
                                                 "rule": json.loads(rule.to_json())})
        # the choices are made; now, and only now, the pages nothing chose on
        crops = crop_metrics(pages)  # the threshold propose will use, chosen on val
        tested = measure_test(model_file, params, data_yaml, test_images, eval_dir / "test",
                              crops[names.CONF_THRESHOLD], rule if snapping else None) if test_images else {}
        metrics = write_reports(box, params, pages, eval_dir, unsnapped, crops, tested)

        def rescore(champion_run: str) -> float:
            console.print("evaluate: the champion was measured on other val data; measuring it again")
            with tempfile.TemporaryDirectory() as tmp:
                weights = run_log.download_model(champion_run, Path(tmp))
                champion_box = measure(weights, params, data_yaml, Path(tmp) / "val", plots=False)
                champion_pages, _, _ = choose_snapping(
                    export_dir, load_val_pages(export_dir, val_images, Path(tmp) / "val" / "predictions.json"), rule)
                return score_of(champion_box, champion_pages, metric)

        decision = register_and_judge(params, run_id, metrics, val_hash, eval_dir, score_of(box, pages, metric),
                                      rescore, rule if snapping else None)
    announce(params, metrics, decision, console)
    return metrics


def main(params: Params, console: Console) -> None:
    run(params, console)

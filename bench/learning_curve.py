"""Benchmark: how many pages a new user must label, from scratch and from qblock's base model.

    python bench/learning_curve.py --style typeset                    # N = 0 8 16 32 64, 2 seeds, both starts
    python bench/learning_curve.py --style demo --pages 64 --seeds 2 --save demo-64
    python bench/learning_curve.py --style typeset --pages 0 16 64 --seeds 1 --work /tmp/lc
    python bench/learning_curve.py --style papers                     # the base model on held-out exam papers
    python bench/learning_curve.py --style typeset --work /tmp/lc --rescore   # today's post-processing, no training
    python bench/learning_curve.py --style typeset --pages 16 --start base --set train.imgsz=640   # a variant
    python bench/learning_curve.py --style typeset --work /tmp/lc --rescore --new 7 --new 11   # and new workbooks

For a page style, one collection is drawn once: a pool of 16 workbooks of 4 pages to label from, 3
val workbooks (where the epoch, the threshold and snapping are chosen, as evaluate chooses them)
and 4 test workbooks, each group with seeds of its own, so its looks are new. For each N (whole
workbooks: N / 4 of the pool's, always the same first ones) a model is trained with the cpu preset
as `dvc repro` would train it (60 epochs), from scratch and from the base model
(``weights/qblock-base-yolov8n.pt``; ``--start coco`` too when ``weights/yolov8n.pt`` is there),
with ``--seeds`` training seeds; then scored on the test workbooks that nothing was chosen on:
crop rate (IoU >= 0.9 at val's threshold, with val's snapping), mAP50, mAP50-95, false crops a page.
N = 0 is the start alone (the base model's own threshold, no snapping): what a first proposal gives.

Styles: ``typeset`` pages (XeLaTeX, boxes tight to the ink) are kept out of the base model's
pages, so they are the new style a user brings; ``demo`` pages (drawn by qblock) are in it, with
other seeds and other labelers; ``papers`` is the base model alone on the HiLEx exam papers its
recipe held out (run the recipe in pretrain/ first). Each figure is a median over seeds with its
range, and the training's minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _harness import project_params, work_folder
from _training import crop_rate_on, new_workbooks, train_as_qblock

REPO = Path(__file__).resolve().parents[1]
PAGES_PER_WORKBOOK = 4
GROUPS = {"pool": (16, 0), "val": (3, 101), "test": (4, 202)}  # workbooks and seed of each group
STARTS = ("scratch", "base", "coco")
DEFAULT_PAGES = (0, 8, 16, 32, 64)


def start_weights(start: str, model: str = "yolov8n") -> str | None:
    """The model.weights value of a start (None: from scratch); an error when its file is not here."""
    if start == "scratch":
        return None
    path = REPO / "weights" / (f"qblock-base-{model}.pt" if start == "base" else f"{model}.pt")
    if not path.is_file():
        raise SystemExit(f"{path}: not here, so --start {start} cannot run"
                         + (" (`qblock weights fetch yolov8n` on a machine with internet)" if start == "coco" else
                            " (`dvc repro` then `qblock pretrain ship` in pretrain/)"))
    return str(path)


def write_group(app: Path, style: str, group: str) -> None:
    """One group's workbooks under ``app/documents`` as ``<group>-<name>``; demo pages all by one labeler."""
    workbooks, seed = GROUPS[group]
    from qblock.data.app_folder import AppFolder

    with tempfile.TemporaryDirectory(prefix="qblock-curve-") as work:
        if style == "typeset":
            from qblock.labeling.typeset_pages import write_typeset_dataset

            write_typeset_dataset(Path(work), workbooks, PAGES_PER_WORKBOOK, seed=seed)
        else:
            from qblock.labeling.demo_data import write_demo_dataset

            write_demo_dataset(Path(work), workbooks, PAGES_PER_WORKBOOK, seed=seed, labeler_seed=0)
        drawn = AppFolder(Path(work))
        for document in drawn.document_names():
            shutil.move(drawn.document(document), AppFolder(app).document(f"{group}-{document}"))


def prepare(work: Path, style: str) -> Path:
    """The style's collection, drawn and exported once into ``work/style`` (kept for the next run)."""
    from rich.console import Console

    from qblock.stages import export

    folder = work / style
    if (folder / "yolo" / "manifest.json").is_file():
        return folder
    (folder / "app" / "documents").mkdir(parents=True, exist_ok=True)
    for group in GROUPS:
        write_group(folder / "app", style, group)
    export.run(folder / "app", folder / "yolo", project_params().export, folder / "export.json",
               Console(file=open(os.devnull, "w")))  # noqa: SIM115
    return folder


def split_for(folder: Path, pages: int) -> Path:
    """train: the first ``pages`` / 4 pool workbooks; val and test: their groups; written once per N."""
    from qblock.data.yolo_folder import file_names, read_manifest

    split = folder / f"split-{pages}"
    documents = read_manifest(folder / "yolo").documents
    document_of = {image: name for name, document in documents.items() for image, _ in file_names(name, document)}
    images = sorted(document_of)
    pool = sorted({d for d in document_of.values() if d.startswith("pool-")})[: pages // PAGES_PER_WORKBOOK]
    sides = {"train": [i for i in images if document_of[i] in pool],
             "val": [i for i in images if document_of[i].startswith("val-")],
             "test": [i for i in images if document_of[i].startswith("test-")]}
    split.mkdir(exist_ok=True)
    for side, names in sides.items():
        (split / f"{side}.txt").write_text("".join(f"images/{n}\n" for n in names), encoding="utf-8")
    return split


def score(weights: Path, params, folder: Path, split: Path, out: Path, chosen: dict | None,
          new: tuple[int, ...] = ()) -> dict:
    """Test figures at val's threshold and snapping (``chosen``: a start's own threshold, no snapping), and
    with ``new`` seeds each seed's new workbooks' (3 of 8 pages, drawn in styles of their own)."""
    from qblock.data.yolo_folder import split_list
    from qblock.model.yolo_env import ultralytics_dataset
    from qblock.quality.crops import crop_metrics, crop_metrics_at, load_val_pages, snap_pages
    from qblock.quality.ink_snap import learn_from_folder
    from qblock.stages.evaluate import choose_snapping, measure

    export_dir = folder / "yolo"
    rule = None
    if chosen is None:
        with ultralytics_dataset(export_dir, split, out / "val") as data_yaml:
            measure(weights, params, data_yaml, out / "val", plots=False)
        val = load_val_pages(export_dir, split_list(split, "val") or [], out / "val" / "predictions.json")
        learned = learn_from_folder(export_dir, split_list(split, "train") or [])
        pages, snapped, _ = choose_snapping(export_dir, val, learned)
        on_val = crop_metrics(pages)
        chosen = {"conf_threshold": on_val["conf_threshold"], "snapped": snapped, "val_crop_rate": on_val["crop_rate"]}
        rule = learned if snapped else None
    with ultralytics_dataset(export_dir, split, out / "test", test=True) as data_yaml:
        box = measure(weights, params, data_yaml, out / "test", plots=False, split="test")
    test = load_val_pages(export_dir, split_list(split, "test") or [], out / "test" / "predictions.json")
    if rule is not None:
        test = snap_pages(export_dir, test, rule)
    result = {"mAP50": round(float(box.map50), 5), "mAP50-95": round(float(box.map), 5), **chosen,
              **crop_metrics_at(test, chosen["conf_threshold"]), "test_pages": len(test)}
    if new:
        result["new"] = {f"seed {seed}": crop_rate_on(weights, params, new_workbooks(folder.parent, folder.name, seed),
                                                      "val", out / f"new-{seed}", chosen["conf_threshold"], rule)
                         for seed in new}
    return result


def train(folder: Path, split: Path, start: str, seed: int, out: Path, sets: tuple[str, ...] = ()
          ) -> tuple[Path, float, list[dict]]:
    """The cpu preset (with ``--set`` overrides) from ``start`` on the split's train pages: best.pt (chosen on
    val), seconds, and each epoch's val mAP (how far the last epochs fall below the best: whether training
    stays put)."""
    params = project_params("train=cpu", f"model.weights={start_weights(start) or 'null'}", f"train.seed={seed}",
                            *sets)
    return train_as_qblock(params, folder / "yolo", split, out)


def run_folder(work: Path, style: str, pages: int, start: str, seed: int, sets: tuple[str, ...]) -> Path:
    """Where a run trains and scores: one folder per N, start, seed and set of overrides."""
    return work / "runs" / style / "-".join([f"{pages}-{start}-seed{seed}", *sets])


def base_threshold(start: str) -> dict:
    """What a start alone crops at: the base model's own chosen threshold (its weights JSON), else 0.25."""
    info = REPO / "weights" / "qblock-base-yolov8n.json"
    if start == "base" and info.is_file():
        threshold = json.loads(info.read_text(encoding="utf-8")).get("metrics", {}).get("conf_threshold")
        if threshold:
            return {"conf_threshold": threshold, "snapped": False}
    return {"conf_threshold": 0.25, "snapped": False}


def held_out_papers(work: Path) -> tuple[Path, Path]:
    """The exam papers the base model's recipe held out (its test split, demo workbooks left out), as a
    split of the recipe's own export (``pretrain/data``: run the recipe here first)."""
    recipe = REPO / "pretrain" / "data"
    listed = recipe / "split" / "test.txt"
    if not listed.is_file():
        raise SystemExit(f"{listed}: not here; run `dvc repro` in pretrain/ first")
    papers = [e for e in listed.read_text(encoding="utf-8").split() if not Path(e).name.startswith("demo-")]
    split = work / "papers" / "split-0"
    split.mkdir(parents=True, exist_ok=True)
    for side in ("train", "val", "test"):  # train and val only because the dataset file wants them
        (split / f"{side}.txt").write_text("".join(f"{e}\n" for e in papers), encoding="utf-8")
    return recipe, split


def run_one(work: Path, style: str, pages: int, start: str, seed: int, sets: tuple[str, ...] = (),
            new: tuple[int, ...] = ()) -> dict:
    if style == "papers":  # HiLEx's held-out exam papers: the base model alone
        folder, split = held_out_papers(work)
        out = work / "runs" / style / f"0-{start}"
        return {"seed": 0, "seconds": 0.0, **score(Path(start_weights(start) or ""), project_params("train=cpu"),
                                                   folder, split, out, base_threshold(start))}
    folder = work / style
    split = split_for(folder, pages)
    out = run_folder(work, style, pages, start, seed, sets)
    params = project_params("train=cpu", *sets)
    if pages == 0:
        weights = Path(start_weights(start) or "")
        return {"seed": seed, "seconds": 0.0, **score(weights, params, folder, split, out, base_threshold(start),
                                                      new)}
    weights, seconds, epochs = train(folder, split, start, seed, out, sets)
    return {"seed": seed, "seconds": round(seconds, 1), "epochs": epochs,
            **score(weights, params, folder, split, out, None, new)}


def rescore(work: Path, style: str, pages: int, start: str, result: dict, sets: tuple[str, ...] = (),
            new: tuple[int, ...] = ()) -> dict:
    """A run's figures measured again on its model (best.pt, or the start for N = 0), its training kept; on the
    new workbooks it was scored on before and ``new``'s."""
    new = tuple(sorted({int(label.split()[1]) for label in result.get("new", {})} | set(new)))
    if style == "papers" or pages == 0:
        return {**result, **run_one(work, style, pages, start, result["seed"], sets, new), "seed": result["seed"]}
    folder = work / style
    out = run_folder(work, style, pages, start, result["seed"], sets)
    weights = out / "train" / "weights" / "best.pt"
    if not weights.is_file():
        return result
    kept = {k: result[k] for k in ("seed", "seconds", "epochs") if k in result}
    return {**kept, **score(weights, project_params("train=cpu", *sets), folder, split_for(folder, pages), out,
                            None, new)}


def spread(values: list[float], digits: int = 3) -> str:
    middle = statistics.median(values)
    if max(values) - min(values) < 0.5 * 10 ** -digits:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def print_table(results: dict, style: str) -> None:
    print(f"\n{style}: test crop rate / mAP50 / mAP50-95 on {GROUPS['test'][0]} new workbooks, median over seeds "
          f"(range), this machine\n")
    for key in sorted(results, key=lambda k: (int(k.split()[0]), k)):
        runs = results[key]
        fall = [max(e["mAP50"] for e in r["epochs"]) - min(e["mAP50"] for e in r["epochs"][-10:])
                for r in runs if r.get("epochs")]
        print(f"N = {key}: crop rate {spread([r['crop_rate'] for r in runs])}  "
              f"mAP50 {spread([r['mAP50'] for r in runs])}  mAP50-95 {spread([r['mAP50-95'] for r in runs])}  "
              f"false crops/page "
              f"{spread([r['false_crops_per_page'] for r in runs], 2)}  training "
              f"{statistics.median(r['seconds'] for r in runs) / 60:.1f} min ({len(runs)} seeds)"
              + (f"  last 10 epochs below best (val mAP50) {spread(fall, 2)}" if fall else ""))
        if all("val_crop_rate" in r for r in runs):
            print(f"  val (where the epoch and threshold were chosen): crop rate "
                  f"{spread([r['val_crop_rate'] for r in runs])}")
        if all("new" in r for r in runs):
            every = [n["crop_rate"] for r in runs for n in r["new"].values()]
            print(f"  new workbooks ({', '.join(runs[0]['new'])}, every training seed): crop rate {spread(every)}")


def save(name: str, style: str, results: dict, args) -> Path:
    """bench/results/learning_curve-NAME.json, rendered into docs/benchmarks.md by `make bench-tables`; its
    figures keyed by N and start alone (a --set variant is named by the file's label and sets)."""
    import platform
    import shlex
    import subprocess
    import sys

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    out = REPO / "bench" / "results" / f"learning_curve-{name}.json"
    out.write_text(json.dumps({
        "bench": "learning_curve", "command": "python bench/learning_curve.py " + shlex.join(sys.argv[1:]),
        "commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "date": time.strftime("%Y-%m-%d"), "style": style, "label": args.label or style,
        "collection": "the HiLEx exam papers in pretrain/'s test split" if style == "papers" else
                      f"pool {GROUPS['pool'][0]}, val {GROUPS['val'][0]}, test {GROUPS['test'][0]} workbooks of "
                      f"{PAGES_PER_WORKBOOK} pages", "sets": args.sets,
        "figures": {" ".join(key.split()[:2]): runs for key, runs in results.items()}}, indent=1), encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", choices=("typeset", "demo", "papers"), default="typeset",
                        help="papers: HiLEx's exam papers the base model's recipe held out (N = 0 only)")
    parser.add_argument("--pages", type=int, nargs="+", default=list(DEFAULT_PAGES),
                        help="labeled pages N (multiples of 4, at most 64)")
    parser.add_argument("--start", action="append", choices=STARTS, help="default: scratch and base (coco too "
                        "when weights/yolov8n.pt is there)")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds 0, 1, ...; medians are reported")
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one); an earlier "
                        "run's trainings are reused")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override of the cpu preset for training and scoring (e.g. train.imgsz=640); "
                        "repeatable; such runs are kept and reported under their own name")
    parser.add_argument("--save", metavar="NAME", help="also write bench/results/learning_curve-NAME.json")
    parser.add_argument("--label", help="with --save: the rows' name in the docs' table (default: the style)")
    parser.add_argument("--report", action="store_true", help="train nothing: print (and --save) what the --work "
                        "folder's runs have so far, each N with the seeds it has")
    parser.add_argument("--new", type=int, action="append", default=[], metavar="SEED",
                        help="also score each model on 3 new workbooks of 8 pages drawn with this seed (repeat): "
                        "what new workbooks get beside val's figure")
    parser.add_argument("--rescore", action="store_true", help="with --work: score the models its runs trained "
                        "again with today's post-processing (threshold, snapping), training nothing")
    args = parser.parse_args()
    if any(n % PAGES_PER_WORKBOOK or not 0 <= n <= GROUPS["pool"][0] * PAGES_PER_WORKBOOK for n in args.pages):
        parser.error(f"--pages: multiples of {PAGES_PER_WORKBOOK} from 0 to {GROUPS['pool'][0] * PAGES_PER_WORKBOOK}")
    starts = args.start or ["scratch", "base"] + (["coco"] if (REPO / "weights" / "yolov8n.pt").is_file() else [])
    if args.style == "papers":
        args.pages, starts = [0], ["base"]
    for start in starts:
        start_weights(start)  # every start's file is here before hours of training begin
    sets = tuple(args.sets)
    if sets:
        from qblock.core.errors import UserError

        try:
            project_params("train=cpu", *sets)  # a wrong key stops here, not after the first training
        except UserError as exc:
            parser.error(f"--set: {exc}")
    with work_folder(args.work, "qblock-learning-curve-") as work:
        from qblock.model.yolo_env import prepare_ultralytics

        prepare_ultralytics(work)
        if args.style != "papers":
            prepare(work, args.style)
        results_file = work / f"learning_curve_{args.style}.json"
        results: dict = json.loads(results_file.read_text()) if results_file.is_file() else {}
        for pages in args.pages:
            for start in starts:
                if pages == 0 and start == "scratch":
                    continue  # an untrained model finds nothing: no need to measure it
                key = " ".join([f"{pages} {start}", *sets])
                runs = [r for r in results.get(key, []) if r["seed"] < (1 if pages == 0 else args.seeds)]
                if args.rescore:
                    runs = [rescore(work, args.style, pages, start, r, sets, tuple(args.new)) for r in runs]
                    results[key] = runs
                    results_file.write_text(json.dumps(results, indent=1))
                for seed in range(1 if pages == 0 else args.seeds):
                    if any(r["seed"] == seed for r in runs) or args.report or args.rescore:
                        continue
                    runs.append(run_one(work, args.style, pages, start, seed, sets, tuple(args.new)))
                    results[key] = runs
                    results_file.write_text(json.dumps(results, indent=1))
                    r = runs[-1]
                    print(f"--- {key} seed {seed}: crop rate {r['crop_rate']}, mAP50 {r['mAP50']}, mAP50-95 "
                          f"{r['mAP50-95']}, {r['seconds']:.0f} s", flush=True)
        wanted = {" ".join([f"{n} {s}", *sets]) for n in args.pages for s in starts}
        print_table({k: v for k, v in results.items() if k in wanted}, args.style)
        if args.save:
            print(f"saved: {save(args.save, args.style, {k: v for k, v in results.items() if k in wanted}, args)}")


if __name__ == "__main__":
    main()

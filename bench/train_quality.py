"""Benchmark: crop rate and time to target for each training preset, as a median over seeds.

    python bench/train_quality.py                          # cpu preset and desktop proxy, 3 seeds each
    python bench/train_quality.py --runs 5 --run cpu --run "cpu 512=train=cpu,train.imgsz=512"
    python bench/train_quality.py --data typeset --cross   # train on typeset pages; also test on demo pages
    python bench/train_quality.py --runs 2 --run cpu --new 7 --new 11 --new 23   # and on new workbooks

A run is a name and Hydra overrides of conf/ (`NAME=OVERRIDE,OVERRIDE`); its training arguments
are exactly what the train stage passes. Each run trains ``--runs`` times, with train.seed 0, 1,
2, ... on the same pages: one seed repeats to the digit on one machine, but another machine (its
CPU's kernels sum in another order) or another library version takes training down another path,
as another seed does; so a preset is judged on the median over seeds, never on its best run, and
the spread is printed beside it.

The pages: ``--data demo`` (default) is `qblock demo-data` (20 workbooks x 4 pages drawn by qblock,
the labeler's convention: a margin, working space owned); ``--data typeset`` is `qblock demo-data
--style typeset` (10 workbooks x 8 pages typeset by XeLaTeX, boxes tight to the ink). With
``--cross`` each model is also scored on the other source's val pages (the snapping rule still
learned from its own training pages): how far a model carries beyond the pages it was trained on.

Built-in runs:
- `ultralytics defaults`: YOLO("yolov8n.yaml").train with only data, epochs, imgsz, device, seed;
- `cpu`: conf/train/cpu.yaml;
- `desktop_4070 proxy`: conf/train/desktop_4070.yaml's augmentation and nominal batch, scaled down
  to what a CPU can run (yolov8n from scratch, the cpu preset's imgsz, epochs and batch).

With ``--new SEED`` (repeat it) each model is also scored on 3 new workbooks of 8 pages that
`qblock demo-data --seed SEED` (or `--style typeset`) draws in styles of their own, and on the
collection's own test split: at the threshold and snapping chosen on its val pages, as `qblock
propose` would cut them. That is what a new workbook gets, beside val's figure, which was chosen on.

Per run: seconds and epochs until val mAP50 first reaches 0.95, the final mAP50 and mAP50-95, and
the crop rate (share of val questions cropped at IoU >= 0.9 at the threshold evaluate chooses)
with and without ink snapping, measured as evaluate measures it. ``--jobs 2`` trains two runs at
once, a core each (on 2 cores about as fast in all as one after the other, and one run's times
are then those of a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from _harness import project_params, work_folder
from _training import SOURCE_SIZES, crop_rate_on, new_workbooks, prepare_source, train_as_qblock

TARGET_MAP50 = 0.95
SOURCES = ("demo", "typeset")
BUILT_IN = {
    "ultralytics defaults": None,
    "cpu": ["train=cpu"],
    "desktop_4070 proxy": ["train=desktop_4070", "model=yolov8n", "model.weights=null", "train.device=cpu",
                           "train.workers=0", "train.cache=true", "train.batch=8"],
}
DEFAULT_RUNS = ("cpu", "desktop_4070 proxy")


def parse_run(text: str) -> tuple[str, list[str] | None]:
    name, _, overrides = text.partition("=")
    if name in BUILT_IN and not overrides:
        return name, BUILT_IN[name]
    return name, [o for o in overrides.split(",") if o]


def run_folder(work: Path, data: str, name: str, seed: int) -> Path:
    return work / "runs" / data / f"{name.replace(' ', '_')}-seed{seed}"


def train_once(work: Path, data: str, name: str, overrides: list[str] | None, seed: int, threads: int,
               cross: bool, new: tuple[int, ...] = ()) -> dict:
    """One training of one run with one seed, scored on its own val pages (and the other source's)."""
    from ultralytics import YOLO

    folder = run_folder(work, data, name, seed)
    cpu = project_params("train=cpu")
    source = work / data
    model = arguments = None
    if overrides is None:  # ultralytics' own defaults at the cpu preset's size and length
        model = YOLO("yolov8n.yaml")
        arguments = {"epochs": cpu.train.epochs, "imgsz": cpu.train.imgsz, "device": "cpu", "seed": seed,
                     "project": str(folder), "name": "train", "exist_ok": True}
        params = cpu
    else:
        params = project_params(*overrides, f"train.seed={seed}")
        if "desktop_4070 proxy" in name:  # scaled to the CPU: the cpu preset's size and length
            params.train.imgsz, params.train.epochs = cpu.train.imgsz, cpu.train.epochs
    weights, seconds, epochs = train_as_qblock(params, source / "yolo", source / "split", folder, threads, model,
                                               arguments)
    result = {"seed": seed, "epochs": epochs, "seconds": seconds, "imgsz": params.train.imgsz,
              **crop_rates(weights, params, source, source, folder / "val")}
    if cross:
        other = next(s for s in SOURCES if s != data)
        result["cross"] = {"pages": other, **crop_rates(weights, params, work / other, source, folder / "cross")}
    if new:
        result["new"] = new_workbook_rates(weights, params, work, data, new, result, folder)
    return result


def new_workbook_rates(weights: Path, params, work: Path, data: str, seeds: tuple[int, ...], chosen: dict,
                       folder: Path) -> dict:
    """The crop rate on the collection's test split and on new workbooks, with val's threshold and snapping."""
    from qblock.data.yolo_folder import split_list
    from qblock.quality.ink_snap import learn_from_folder

    source = work / data
    rule = learn_from_folder(source / "yolo", split_list(source / "split", "train") or []) \
        if chosen["snapped"] else None
    places = {f"seed {seed}": (new_workbooks(work, data, seed), "val") for seed in seeds}
    if split_list(source / "split", "test"):
        places["test split"] = (source, "test")
    return {label: crop_rate_on(weights, params, pages, side, folder / label.replace(" ", "-"),
                                chosen["conf_threshold"], rule) for label, (pages, side) in places.items()}


def crop_rates(weights: Path, params, pages: Path, trained_on: Path, out: Path) -> dict:
    """mAP and the crop rate with and without ink snapping on ``pages``' val split, as evaluate
    measures them; the snapping rule learned from ``trained_on``'s training boxes."""
    from qblock.data.yolo_folder import split_list
    from qblock.model.yolo_env import ultralytics_dataset
    from qblock.quality.crops import crop_metrics, load_val_pages
    from qblock.quality.ink_snap import learn_from_folder
    from qblock.stages.evaluate import choose_snapping, measure

    with ultralytics_dataset(pages / "yolo", pages / "split", out) as data_yaml:
        box = measure(weights, params, data_yaml, out, plots=False)
    val = load_val_pages(pages / "yolo", split_list(pages / "split", "val") or [], out / "predictions.json")
    rule = learn_from_folder(trained_on / "yolo", split_list(trained_on / "split", "train") or [])
    chosen, snapped, plain = choose_snapping(pages / "yolo", val, rule)
    final = crop_metrics(chosen)
    return {"mAP50": round(float(box.map50), 5), "mAP50-95": round(float(box.map), 5),
            "crop_rate": final["crop_rate"], "crop_rate_unsnapped": plain["crop_rate"], "snapped": snapped,
            "conf_threshold": final["conf_threshold"], "false_crops_per_page": final["false_crops_per_page"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", metavar="NAME[=OVERRIDES]",
                        help=f"a run to make (repeat); default: {', '.join(DEFAULT_RUNS)}")
    parser.add_argument("--runs", type=int, default=3, help="seeds per run (0, 1, ...); the median is reported")
    parser.add_argument("--data", choices=SOURCES, default="demo", help="the pages to train and score on")
    parser.add_argument("--cross", action="store_true", help="also score each model on the other source's val pages")
    parser.add_argument("--size", type=int, nargs=2, metavar=("WORKBOOKS", "PAGES"),
                        help="the collection trained on: this many workbooks of this many pages (default 10 8 for "
                             "demo, 16 6 for typeset); use a new --work folder for each size")
    parser.add_argument("--save", metavar="NAME", help="also write bench/results/train_quality-NAME.json, which "
                        "`make bench-tables` renders into docs/benchmarks.md")
    parser.add_argument("--new", type=int, action="append", default=[], metavar="SEED",
                        help="also score on 3 new workbooks drawn with this seed (repeat), and on the test split; "
                             "with --rescore, on these besides the run's own")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (each gets cores / jobs threads)")
    parser.add_argument("--skip-done", action="store_true", help="with --work: keep the runs and seeds its results "
                        "file already has, train only the others")
    parser.add_argument("--work", type=Path, help="working folder, kept with the per-epoch figures and the models "
                                                   "(default: a temporary one, removed); an earlier run's is reused")
    parser.add_argument("--rescore", action="store_true", help="with --work of an earlier run: measure its models' "
                        "crop rates again with today's post-processing (no training), and print the table")
    args = parser.parse_args()
    if args.rescore:
        if args.work is None:
            parser.error("--rescore needs the --work folder of an earlier run")
        rescore(args.work.resolve(), args.cross, args)
        return
    runs = dict(parse_run(r) for r in args.run) if args.run else {n: BUILT_IN[n] for n in DEFAULT_RUNS}
    with work_folder(args.work, "qblock-train-quality-") as work:
        measure_runs(work, runs, args)


def measure_runs(work: Path, runs: dict[str, list[str] | None], args) -> None:
    from qblock.model.yolo_env import prepare_ultralytics

    prepare_ultralytics(work)
    for source in {args.data, *(SOURCES if args.cross else ())}:
        started = time.perf_counter()
        prepare_source(work / source, source, tuple(args.size) if args.size and source == args.data else None)
        print(f"{source} pages ready in {time.perf_counter() - started:.0f} s", flush=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    results_file = work / f"train_quality_{args.data}.json"
    results: dict[str, list[dict]] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    done = {(name, r["seed"]) for name, seeds in results.items() for r in seeds} if args.skip_done else set()
    jobs = [(name, overrides, seed) for seed in range(args.runs) for name, overrides in runs.items()
            if (name, seed) not in done]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_once, work, args.data, name, overrides, seed, threads, args.cross,
                               tuple(args.new)): (name, seed)
                   for name, overrides, seed in jobs}
        for future, (name, seed) in futures.items():
            result = future.result()
            results[name] = [r for r in results.get(name, []) if r["seed"] != seed] + [result]
            print(f"--- {name} seed {seed}: " + ", ".join(f"{k} {result[k]}" for k in
                  ("mAP50", "mAP50-95", "crop_rate", "crop_rate_unsnapped", "conf_threshold")) +
                  f", {result['seconds']:.0f} s", flush=True)
            results_file.write_text(json.dumps(results, indent=1))
    print_table({n: [r for r in results[n] if r["seed"] < args.runs] for n in runs}, work, args.data)
    print(f"all figures: {results_file}")
    if args.save:
        saved = save_results(args.save, {n: [r for r in results[n] if r["seed"] < args.runs] for n in runs}, args)
        print(f"saved for the benchmarks page: {saved} (then `make bench-tables`)")


def save_results(name: str, figures: dict, args) -> Path:
    """bench/results/train_quality-NAME.json: the figures with the command, commit, machine and date."""
    import platform
    import subprocess
    import sys

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    size = tuple(args.size) if args.size else SOURCE_SIZES[args.data]
    out = Path(__file__).parent / "results" / f"train_quality-{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "bench": "train_quality", "command": "python bench/train_quality.py " + " ".join(sys.argv[1:]),
        "commit": commit, "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "date": time.strftime("%Y-%m-%d"), "collection": f"{args.data}: {size[0]} workbooks x {size[1]} pages",
        "note": "the same models scored again (--rescore)" if getattr(args, "rescore", False) else "",
        "figures": figures}, indent=1), encoding="utf-8")
    return out


def rescore(work: Path, cross: bool, args) -> None:
    from qblock.model.yolo_env import prepare_ultralytics

    prepare_ultralytics(work)
    for results_file in sorted(work.glob("train_quality_*.json")):
        data = results_file.stem.removeprefix("train_quality_")
        results = json.loads(results_file.read_text())
        for name, seeds in results.items():
            for result in seeds:
                params = project_params("train=cpu", f"train.imgsz={result['imgsz']}")
                folder = run_folder(work, data, name, result["seed"])
                weights = folder / "train" / "weights" / "best.pt"
                result.update(crop_rates(weights, params, work / data, work / data, folder / "val"))
                if cross:
                    other = next(s for s in SOURCES if s != data)
                    result["cross"] = {"pages": other, **crop_rates(weights, params, work / other, work / data,
                                                                    folder / "cross")}
                if "new" in result:  # the new workbooks again (and --new's), at the threshold today's rule chooses
                    seeds_drawn = tuple(sorted({int(label.split()[1]) for label in result["new"]
                                                if label.startswith("seed")} | set(args.new)))
                    result["new"] = new_workbook_rates(weights, params, work, data, seeds_drawn, result, folder)
        print_table(results, work, data)
        results_file.write_text(json.dumps(results, indent=1))
        if args.save:
            args.data = data
            print(f"saved for the benchmarks page: {save_results(args.save, results, args)}")


def spread(values: list[float], digits: int = 3) -> str:
    """The median, and the range when the runs differ: '0.877 (0.723-0.885)'."""
    middle = statistics.median(values)
    if max(values) - min(values) < 0.5 * 10 ** -digits:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def print_table(results: dict[str, list[dict]], work: Path, data: str) -> None:
    val_pages = len((work / data / "split" / "val.txt").read_text().split())
    pages = val_pages + len((work / data / "split" / "train.txt").read_text().split())
    print(f"\n{pages} {data} pages ({val_pages} val), this machine; median over seeds (range); "
          f"target val mAP50 >= {TARGET_MAP50}\n")
    for name, seeds in results.items():
        reached = [next((e for e in r["epochs"] if e["mAP50"] >= TARGET_MAP50), None) for r in seeds]
        when = [e["epoch"] for e in reached if e]
        print(f"{name}: {len(seeds)} seeds ({', '.join(str(r['seed']) for r in seeds)}), imgsz {seeds[0]['imgsz']}, "
              f"{len(seeds[0]['epochs'])} epochs, {statistics.median(r['seconds'] for r in seeds):.0f} s median")
        print(f"  mAP50 {spread([r['mAP50'] for r in seeds])}   mAP50-95 {spread([r['mAP50-95'] for r in seeds])}   "
              f"reached 0.95 in {len(when)} of {len(seeds)} (median epoch "
              f"{statistics.median(when) if when else '-'})")
        print(f"  crop rate {spread([r['crop_rate'] for r in seeds])}   unsnapped "
              f"{spread([r['crop_rate_unsnapped'] for r in seeds])}   threshold "
              f"{spread([r['conf_threshold'] for r in seeds], 2)}")
        if all("new" in r for r in seeds):
            for label in seeds[0]["new"]:
                print(f"  {label}: crop rate {spread([r['new'][label]['crop_rate'] for r in seeds])}   mAP50 "
                      f"{spread([r['new'][label]['mAP50'] for r in seeds])}")
            every = [r["new"][label]["crop_rate"] for r in seeds for label in r["new"] if label.startswith("seed")]
            print(f"  new workbooks, all seeds: crop rate {spread(every)} against val's "
                  f"{spread([r['crop_rate'] for r in seeds])}")
        if all("cross" in r for r in seeds):
            other = seeds[0]["cross"]["pages"]
            print(f"  on {other} pages: crop rate {spread([r['cross']['crop_rate'] for r in seeds])}   mAP50 "
                  f"{spread([r['cross']['mAP50'] for r in seeds])}   unsnapped "
                  f"{spread([r['cross']['crop_rate_unsnapped'] for r in seeds])}")


if __name__ == "__main__":
    main()

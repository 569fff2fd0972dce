"""Benchmark: crop rate and time to target for each training preset, next to ultralytics' defaults.

    python bench/train_quality.py                      # defaults, cpu preset, desktop_4070 CPU proxy
    python bench/train_quality.py --run "cpu 320=train=cpu,train.imgsz=320" --run cpu

All runs train on the same exported and split demo collection (8 workbooks x 6 pages of
`qblock demo-data`: A4 and B5, 100-200 dpi, one and two columns, scans), on this machine, one
after the other. Each run is a name and Hydra overrides of conf/ (`NAME=OVERRIDE,OVERRIDE`); its
training arguments are exactly what the train stage passes. The built-in runs:

- `ultralytics defaults`: YOLO("yolov8n.yaml").train with only data, epochs, imgsz and device
  given (the cpu preset's epochs and imgsz), everything else ultralytics' own;
- `cpu`: conf/train/cpu.yaml;
- `desktop_4070 proxy`: conf/train/desktop_4070.yaml's augmentation and nominal batch, scaled down
  to what a CPU can run: yolov8n from scratch, the cpu preset's imgsz, epochs and batch (AutoBatch,
  the preset's `batch: -1`, needs a GPU), on the CPU.

For each run it prints the seconds and epochs until val mAP50 first reaches the target (0.95),
the final mAP50 and mAP50-95, and the crop rate (share of val questions cropped at IoU >= 0.9 at
the threshold evaluate chooses) with and without ink snapping, measured as evaluate measures it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _harness import project_params, work_folder
from _training import EpochClock, prepare_demo

TARGET_MAP50 = 0.95
BUILT_IN = {
    "ultralytics defaults": None,
    "cpu": ["train=cpu"],
    "desktop_4070 proxy": ["train=desktop_4070", "model=yolov8n", "model.weights=null", "train.device=cpu",
                           "train.workers=0", "train.cache=true", "train.batch=8"],
}


def parse_run(text: str) -> tuple[str, list[str] | None]:
    name, _, overrides = text.partition("=")
    if name in BUILT_IN and not overrides:
        return name, BUILT_IN[name]
    return name, [o for o in overrides.split(",") if o]


def train_once(name: str, overrides: list[str] | None, cpu, work: Path) -> dict:
    from ultralytics import YOLO

    from qblock.model.yolo_env import ultralytics_dataset, use_cpu_threads
    from qblock.stages.train import model_source, train_arguments

    clock = EpochClock()
    folder = work / "runs" / name.replace(" ", "_")
    with ultralytics_dataset(work / "yolo", work / "split", work) as data_yaml:
        if overrides is None:
            model = YOLO("yolov8n.yaml")
            arguments = {"data": str(data_yaml), "epochs": cpu.train.epochs, "imgsz": cpu.train.imgsz,
                         "device": "cpu", "project": str(folder.parent), "name": folder.name, "exist_ok": True,
                         "plots": False, "verbose": False}
            params = cpu
        else:
            params = project_params(*overrides)
            if "desktop_4070 proxy" in name:  # scaled to the CPU: the cpu preset's size and length
                params.train.imgsz, params.train.epochs = cpu.train.imgsz, cpu.train.epochs
            model = YOLO(model_source(params.model))
            use_cpu_threads(model, params.train.cpu_threads)
            arguments = train_arguments(params, data_yaml, folder) | {"plots": False, "verbose": False}
        clock.attach(model)
        start = time.perf_counter()
        model.train(**arguments)
        seconds = time.perf_counter() - start
        crops = crop_rates(folder / "weights" / "best.pt", params, data_yaml, work)
    return {"epochs": clock.epochs, "seconds": seconds, "imgsz": arguments["imgsz"], **crops}


def crop_rates(weights: Path, params, data_yaml: Path, work: Path) -> dict:
    """The crop rate with and without ink snapping, as the evaluate stage measures it."""
    from qblock.data.yolo_folder import split_list
    from qblock.quality.crops import load_val_pages
    from qblock.quality.ink_snap import learn_from_folder
    from qblock.stages.evaluate import choose_snapping, measure

    out = work / "val" / weights.parent.parent.name
    measure(weights, params, data_yaml, out, plots=False)
    pages = load_val_pages(work / "yolo", split_list(work / "split", "val") or [], out / "predictions.json")
    rule = learn_from_folder(work / "yolo", split_list(work / "split", "train") or [])
    chosen, snapped, plain = choose_snapping(work / "yolo", pages, rule)
    from qblock.quality.crops import crop_metrics

    final = crop_metrics(chosen)
    return {"crop_rate": final["crop_rate"], "crop_rate_unsnapped": plain["crop_rate"], "snapped": snapped,
            "false_crops_per_page": final["false_crops_per_page"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", metavar="NAME[=OVERRIDES]",
                        help="a run to make (repeat); default: the three built-in runs")
    parser.add_argument("--work", type=Path, help="working folder, kept with the per-epoch figures and the models "
                                                   "(default: a temporary one, removed)")
    parser.add_argument("--rescore", action="store_true", help="with --work of an earlier run: measure its models' "
                        "crop rates again with today's post-processing (no training), and print the table")
    args = parser.parse_args()
    if args.rescore:
        if args.work is None:
            parser.error("--rescore needs the --work folder of an earlier run")
        rescore(args.work.resolve())
        return
    runs = dict(parse_run(r) for r in args.run) if args.run else dict(BUILT_IN)
    with work_folder(args.work, "qblock-train-quality-") as work:
        measure_runs(work, runs, keep=args.work is not None)


def rescore(work: Path) -> None:
    from qblock.model.yolo_env import prepare_ultralytics, ultralytics_dataset

    prepare_ultralytics(work)
    results = json.loads((work / "train_quality.json").read_text())
    cpu = project_params("train=cpu")
    for name, result in results.items():
        cpu.train.imgsz = result["imgsz"]
        with ultralytics_dataset(work / "yolo", work / "split", work) as data_yaml:
            result.update(crop_rates(work / "runs" / name.replace(" ", "_") / "weights" / "best.pt", cpu, data_yaml,
                                     work))
    print_table(results, work)
    (work / "train_quality.json").write_text(json.dumps(results, indent=1))


def measure_runs(work: Path, runs: dict[str, list[str] | None], keep: bool) -> None:
    from qblock.model.yolo_env import prepare_ultralytics

    prepare_ultralytics(work)
    prepare_demo(work)
    cpu = project_params("train=cpu")
    results = {}
    for name, overrides in runs.items():
        print(f"--- {name}: {' '.join(overrides) if overrides else 'ultralytics defaults'}", flush=True)
        results[name] = train_once(name, overrides, cpu, work)
    print_table(results, work)
    (work / "train_quality.json").write_text(json.dumps(results, indent=1))
    print(f"per-epoch figures: {work / 'train_quality.json'}" if keep else
          "(run with --work DIR to keep the per-epoch figures and the trained models)")


def print_table(results: dict, work: Path) -> None:
    val_pages = len((work / "split" / "val.txt").read_text().split())
    pages = val_pages + len((work / "split" / "train.txt").read_text().split())
    print(f"\n{pages} demo pages ({val_pages} val), this machine, target val mAP50 >= {TARGET_MAP50}\n")
    print(f"{'':22}{'imgsz':>6}{'epochs':>7}{'mAP50>=0.95 after':>21}{'mAP50':>7}{'mAP50-95':>9}"
          f"{'crop rate':>10}{'unsnapped':>10}{'time':>8}")
    for name, r in results.items():
        reached = next((e for e in r["epochs"] if e["mAP50"] >= TARGET_MAP50), None)
        when = f"{reached['seconds']:.0f} s (epoch {reached['epoch']})" if reached else "never"
        last = r["epochs"][-1]
        print(f"{name:22}{r['imgsz']:>6}{len(r['epochs']):>7}{when:>21}{last['mAP50']:>7.3f}{last['mAP50-95']:>9.3f}"
              f"{r['crop_rate']:>10.3f}{r['crop_rate_unsnapped']:>10.3f}{r['seconds']:>7.0f}s")


if __name__ == "__main__":
    main()

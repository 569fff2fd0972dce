"""Benchmark: qblock's `cpu` preset against ultralytics' defaults, same demo data, same machine.

    python bench/train_quality.py              # 60 epochs each (about 15 minutes on 2 cores)
    python bench/train_quality.py --epochs 40

Both runs train yolov8n from scratch on the 48-page demo (42 train / 6 val pages) at imgsz 256
for the same number of epochs. "ultralytics' defaults" is YOLO(...).train with only data, imgsz,
epochs and device given; the preset is conf/train/cpu.yaml as the train stage passes it
(including its torch thread count). Prints, for each: seconds and epochs until val mAP50 first
reaches 0.9, and the final mAP50 and mAP50-95. Target (issue 4): the preset reaches 0.9 at least
2x sooner, with a final mAP50-95 no lower.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _harness import work_folder
from _training import EpochClock, prepare_demo


def train_once(name: str, arguments: dict, threads: int | None, work: Path) -> EpochClock:
    from ultralytics import YOLO

    from qblock.model.yolo_env import ultralytics_dataset, use_cpu_threads

    clock = EpochClock()
    with ultralytics_dataset(work / "yolo", work / "split", work) as data_yaml:
        model = YOLO("yolov8n.yaml")
        clock.attach(model)
        if threads is not None:
            use_cpu_threads(model, threads)
        model.train(data=str(data_yaml), project=str(work / "runs"), name=name, exist_ok=True, plots=False,
                    verbose=False, **arguments)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--work", type=Path, help="working folder, kept with the per-epoch figures and the models "
                                                   "(default: a temporary one, removed)")
    args = parser.parse_args()
    with work_folder(args.work, "qblock-train-bench-") as work:
        measure(work, args.epochs, keep=args.work is not None)


def measure(work: Path, epochs: int, keep: bool) -> None:
    from _harness import project_params

    from qblock.model.yolo_env import prepare_ultralytics
    from qblock.stages.train import train_arguments

    prepare_ultralytics(work)
    prepare_demo(work)
    params = project_params("train=cpu")
    preset = {k: v for k, v in train_arguments(params, Path("unused"), Path("unused/x")).items()
              if k not in ("data", "project", "name", "exist_ok", "plots", "verbose")}
    preset["epochs"] = epochs
    runs = {
        "ultralytics defaults": train_once("defaults", {"epochs": epochs, "imgsz": 256, "device": "cpu"},
                                           None, work),
        "qblock cpu preset": train_once("preset", preset, params.train.cpu_threads, work),
    }
    print(f"\n{epochs} epochs each, yolov8n from scratch, 48 demo pages, imgsz 256\n")
    print(f"{'':24}{'mAP50>=0.9 after':>22}{'final mAP50':>14}{'final mAP50-95':>16}{'total':>9}")
    summary = {}
    for name, clock in runs.items():
        reached = clock.first_reaching("mAP50", 0.9)
        last = clock.epochs[-1]
        when = f"{reached['seconds']:.0f} s (epoch {reached['epoch']})" if reached else "never"
        print(f"{name:24}{when:>22}{last['mAP50']:>14.3f}{last['mAP50-95']:>16.3f}{last['seconds']:>8.0f}s")
        summary[name] = {"reached_0.9": reached, "final": last}
    base, ours = (summary[n]["reached_0.9"] for n in runs)
    if base and ours:
        print(f"\nthe preset reaches mAP50 0.9 {base['seconds'] / ours['seconds']:.2f}x sooner (target: >= 2x)")
    elif ours:
        print(f"\nthe defaults never reached mAP50 0.9 in {epochs} epochs; the preset did")
    gap = summary["qblock cpu preset"]["final"]["mAP50-95"] - summary["ultralytics defaults"]["final"]["mAP50-95"]
    print(f"final mAP50-95, preset minus defaults: {gap:+.3f} (target: >= 0)")
    (work / "train_quality.json").write_text(json.dumps({n: c.epochs for n, c in runs.items()}, indent=1))
    print(f"per-epoch figures: {work / 'train_quality.json'}" if keep else
          "(run with --work DIR to keep the per-epoch figures and the trained models)")


if __name__ == "__main__":
    main()

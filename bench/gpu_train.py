"""Benchmark: the desktop_4070 preset on a GPU, the train stage beside bare ultralytics.

    python bench/gpu_train.py                         # the preset as composed, on GPU 0
    python bench/gpu_train.py --epochs 30 --documents 40 --pages 10
    python bench/gpu_train.py --set train.batch=8     # any Hydra override of conf/
    python bench/gpu_train.py --device cpu --epochs 1 --set train.imgsz=128 --set model=yolov8n   # checks the script

Run it whenever a GPU is at hand (the README says which figures came from which machine). Both
sides train from the same exported and split demo collection (`qblock demo-data`, default 10
workbooks x 8 pages), each as a fresh process: `qblock train` (MLflow run, per-epoch logging,
checkpoints: what `dvc repro` runs) and a script doing only `YOLO(...).train(...)` with the same
arguments. For each it prints:

- train images per second (train pages x epochs over the process's wall time) and the ratio,
  qblock over bare (target: >= 0.98);
- the median epoch time from ultralytics' results.csv;
- the peak GPU memory in use while it ran (nvidia-smi, sampled every 0.2 s) and whether that fits
  a 12 GB card such as the RTX 4070;
- the batch size ultralytics used (`batch: -1` is resolved by its AutoBatch);
- val mAP50, mAP50-95 and the crop rate (share of val questions cropped at IoU >= 0.9 at the
  threshold evaluate chooses, ink snapping included when it helps), measured the same way for both.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from _harness import work_folder

REPO = Path(__file__).resolve().parents[1]
CARD_GB = 12.0  # the RTX 4070
BARE = """
import json, sys
from pathlib import Path
from qblock.config.schema import load_params
from qblock.data.yolo_folder import split_list
from qblock.stages.train import model_source, page_size, train_arguments
from qblock.model.yolo_env import prepare_ultralytics, ultralytics_dataset, use_cpu_threads
root = Path.cwd()
params = load_params(root)
prepare_ultralytics(root)
from ultralytics import YOLO
export_dir, split_dir = Path(params.paths.export_dir), Path(params.paths.split_dir)
size, _ = page_size(params, export_dir, split_list(split_dir, "train") or [])
with ultralytics_dataset(export_dir, split_dir, root) as data_yaml:
    model = YOLO(model_source(params.model)[0])
    use_cpu_threads(model, params.train.cpu_threads)
    model.train(**train_arguments(params, data_yaml, root / "bare", size))
print("BATCH", model.trainer.batch_size)
"""


class GpuMemory:
    """The peak of nvidia-smi's memory.used (MiB) on one GPU while a block runs; None without one."""

    def __init__(self, device: str) -> None:
        self.device = device.split(",")[0]
        self.peak: float | None = None
        self._stop = threading.Event()

    def _sample(self) -> float | None:
        try:
            out = subprocess.run(["nvidia-smi", "-i", self.device, "--query-gpu=memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._sample()
            if value is not None:
                self.peak = value if self.peak is None else max(self.peak, value)
            self._stop.wait(0.2)

    def __enter__(self) -> GpuMemory:
        if self.device != "cpu":
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.device != "cpu":
            self._thread.join()


def run_side(command: list[str], work: Path, device: str) -> dict:
    with GpuMemory(device) as memory:
        start = time.perf_counter()
        result = subprocess.run(command, cwd=work, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    said = result.stdout + result.stderr
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(command[:3])}` failed ({result.returncode}):\n{said[-4000:]}")
    batch = re.findall(r"AutoBatch: .*?batch-size (\d+)", said) or re.findall(r"^BATCH (\d+)", said, re.M)
    return {"seconds": seconds, "peak_mib": memory.peak, "batch": int(batch[-1]) if batch else None}


def epoch_times(results_csv: Path) -> list[float]:
    """Per-epoch seconds from ultralytics' results.csv (its `time` column is cumulative)."""
    with results_csv.open(encoding="utf-8") as handle:
        cumulative = [float(row["time"]) for row in csv.DictReader(handle, skipinitialspace=True) if row.get("time")]
    return [b - a for a, b in zip([0.0, *cumulative], cumulative, strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    parser.add_argument("--documents", type=int, default=10)
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--device", default="0", help="0 (first GPU), or cpu to check the script")
    parser.add_argument("--set", action="append", default=[], metavar="OVERRIDE", help="a Hydra override of conf/")
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    with work_folder(args.work, "qblock-gpu-train-") as work:
        measure(work, args)


def measure(work: Path, args: argparse.Namespace) -> None:
    from _training import prepare_demo
    from train_quality import crop_rates

    from qblock.config.compose import compose_params
    from qblock.config.schema import load_params
    from qblock.labeling.demo_data import write_demo_dataset
    from qblock.model.yolo_env import prepare_ultralytics, ultralytics_dataset

    overrides = ["train=desktop_4070", f"train.device={args.device}", *args.set]
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    if args.device == "cpu":
        overrides += ["train.workers=0", "train.amp=false"]
    (work / "params.yaml").write_text(yaml.safe_dump(compose_params(REPO, overrides), sort_keys=False))
    params = load_params(work)
    os.chdir(work)
    prepare_ultralytics(work)
    if not (work / "app" / "documents").is_dir():
        write_demo_dataset(work / "app", args.documents, args.pages, seed=0)
    prepare_demo(work, Path(params.paths.export_dir), Path(params.paths.split_dir))
    train_pages = len((Path(params.paths.split_dir) / "train.txt").read_text().split())
    sides = {
        "bare YOLO.train": ([sys.executable, "-c", BARE], work / "bare"),
        "qblock train stage": ([sys.executable, "-m", "qblock", "train"], Path(params.paths.train_dir)),
    }
    rows = {}
    for name, (command, folder) in sides.items():
        print(f"--- {name}", flush=True)
        measured = run_side(command, work, args.device)
        model_dir = folder / "weights" if name.startswith("bare") else Path(params.paths.model_dir)
        weights = model_dir / "best.pt"
        with ultralytics_dataset(Path(params.paths.export_dir), Path(params.paths.split_dir), work) as data_yaml:
            crops = crop_rates(weights, params, data_yaml, work)
        times = epoch_times(folder / "results.csv")
        with (folder / "results.csv").open(encoding="utf-8") as handle:
            last = list(csv.DictReader(handle, skipinitialspace=True))[-1]
        rows[name] = measured | crops | {
            "images_per_s": train_pages * len(times) / measured["seconds"], "epoch_s": statistics.median(times),
            "epochs": len(times), "mAP50": float(last["metrics/mAP50(B)"]),
            "mAP50-95": float(last["metrics/mAP50-95(B)"])}
    t = params.train
    print(f"\n{params.model.name}, imgsz {t.imgsz}, batch {t.batch} (-1: AutoBatch), {train_pages} train pages, "
          f"device {args.device}")
    print(f"{'':20}{'batch':>6}{'images/s':>10}{'epoch':>8}{'peak GPU':>10}{'fits 12 GB':>11}{'mAP50':>7}"
          f"{'mAP50-95':>9}{'crop rate':>10}")
    for name, r in rows.items():
        peak = f"{r['peak_mib'] / 1024:.1f} GB" if r["peak_mib"] else "n/a"
        fits = ("yes" if r["peak_mib"] / 1024 <= CARD_GB else "no") if r["peak_mib"] else "n/a"
        print(f"{name:20}{r['batch'] or t.batch:>6}{r['images_per_s']:>10.1f}{r['epoch_s']:>7.1f}s{peak:>10}{fits:>11}"
              f"{r['mAP50']:>7.3f}{r['mAP50-95']:>9.3f}{r['crop_rate']:>10.3f}")
    bare, ours = rows["bare YOLO.train"], rows["qblock train stage"]
    print(f"qblock / bare images/s: {ours['images_per_s'] / bare['images_per_s']:.3f} (target: >= 0.98); "
          f"crop rate {ours['crop_rate']:.3f} (target: >= 0.95)")
    (work / "gpu_train.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

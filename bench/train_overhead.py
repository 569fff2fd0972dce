"""Benchmark: the train stage's wall time beside a bare YOLO(...).train(...) with the same arguments.

    python bench/train_overhead.py              # 15 epochs, each variant twice
    python bench/train_overhead.py --epochs 8 --repeats 1

What qblock adds around ultralytics (MLflow run with per-epoch metrics and the model file,
dataset hash, lineage tags, checkpoint folder, copying results) must cost under 5% (issue 4).
Each run is a fresh process, as under `dvc repro`: `qblock train` against a small script that
does only `YOLO(...).train(...)` with the same arguments and torch thread count (imports
included on both sides). Both train yolov8n on the 48-page demo with the cpu preset. The
order alternates between rounds, and an untimed first round creates the MLflow store and
warms the disk cache, so neither side always runs on a warmer machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import yaml
from _harness import timed, work_folder
from _training import prepare_demo

REPO = Path(__file__).resolve().parents[1]
BARE = """
from pathlib import Path
from qblock.config.schema import load_params
from qblock.data.yolo_folder import split_list
from qblock.stages.train import page_size, train_arguments
from qblock.model.yolo_env import prepare_ultralytics, ultralytics_dataset, use_cpu_threads
root = Path.cwd()
params = load_params(root)
prepare_ultralytics(root)
from ultralytics import YOLO
export_dir, split_dir = Path(params.paths.export_dir), Path(params.paths.split_dir)
size, _ = page_size(params, export_dir, split_list(split_dir, "train") or [])
with ultralytics_dataset(export_dir, split_dir, root) as data_yaml:
    model = YOLO(params.model.architecture)
    use_cpu_threads(model, params.train.cpu_threads)
    model.train(**train_arguments(params, data_yaml, root / "bare", size))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    with work_folder(args.work, "qblock-overhead-") as work:
        measure(work, args.epochs, args.repeats)


def measure(work: Path, epochs: int, repeats: int) -> None:
    from qblock.config.compose import compose_params
    from qblock.config.schema import load_params

    data = compose_params(REPO, ["train=cpu", f"train.epochs={epochs}"])
    (work / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    params = load_params(work)
    os.chdir(work)
    prepare_demo(work, Path(params.paths.export_dir), Path(params.paths.split_dir))
    variants = {"bare YOLO.train": [sys.executable, "-c", BARE],
                "qblock train stage": [sys.executable, "-m", "qblock", "train"]}
    for command in variants.values():  # warm-up: the MLflow store, the disk cache
        timed(command, work)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(repeats):
        order = list(variants) if index % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(timed(variants[name], work))
        print(f"round {index + 1}: " + ", ".join(f"{n} {times[n][-1]:.1f} s" for n in variants), flush=True)
    print(f"\n{epochs} epochs, {repeats} round(s), each run a fresh process; yolov8n, cpu preset, "
          "48 demo pages")
    for name, values in times.items():
        print(f"{name:22}" + "".join(f"{v:>9.1f}s" for v in values) + f"   median {statistics.median(values):.1f} s")
    base, ours = (statistics.median(v) for v in times.values())
    print(f"qblock / bare: {ours / base:.3f} (target: <= 1.05)")


if __name__ == "__main__":
    main()

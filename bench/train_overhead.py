"""Benchmark: the train stage's wall time beside a bare YOLO(...).train(...) with the same arguments.

    python bench/train_overhead.py              # 8 epochs, each variant twice, alternating
    python bench/train_overhead.py --epochs 4 --repeats 1

What qblock adds around ultralytics (dataset hash, MLflow run with per-epoch metrics and the
model file, checkpoint folder, copying results) must cost under 5% (issue 4). Both variants
train yolov8n on the 48-page demo with the cpu preset's arguments and the same torch thread
count; they alternate so that neither always runs on a warmer machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _training import prepare_demo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def bare(params, work: Path, index: int) -> float:
    from ultralytics import YOLO

    from qblock.train import train_arguments
    from qblock.yolo_env import ultralytics_dataset, use_cpu_threads

    with ultralytics_dataset(Path(params.paths.export_dir), Path(params.paths.split_dir), work) as data_yaml:
        start = time.perf_counter()
        model = YOLO(params.model.architecture)
        use_cpu_threads(model, params.train.cpu_threads)
        model.train(**train_arguments(params, data_yaml, work / "bare" / f"run{index}"))
        return time.perf_counter() - start


def stage(params, work: Path) -> float:
    from rich.console import Console

    from qblock import train

    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    start = time.perf_counter()
    train.run(params, quiet)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="qblock-overhead-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)

    from qblock.config import compose_params, load_params
    from qblock.yolo_env import prepare_ultralytics

    data = compose_params(REPO, ["train=cpu", f"train.epochs={args.epochs}"])
    (work / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    os.chdir(work)  # the train stage runs at a project root, as under `dvc repro`
    prepare_ultralytics(work)
    params = load_params(work)
    prepare_demo(work, Path(params.paths.export_dir), Path(params.paths.split_dir))

    times: dict[str, list[float]] = {"bare YOLO.train": [], "qblock train stage": []}
    for index in range(args.repeats):
        times["bare YOLO.train"].append(bare(params, work, index))
        times["qblock train stage"].append(stage(params, work))
        print(f"round {index + 1}: bare {times['bare YOLO.train'][-1]:.1f} s, "
              f"qblock {times['qblock train stage'][-1]:.1f} s", flush=True)
    base, ours = (sum(v) for v in times.values())
    print(f"\n{args.epochs} epochs x {args.repeats}, yolov8n, cpu preset, 48 demo pages")
    for name, values in times.items():
        print(f"{name:22}" + "".join(f"{v:>9.1f}s" for v in values) + f"   total {sum(values):.1f} s")
    print(f"qblock / bare: {ours / base:.3f} (target: <= 1.05)")


if __name__ == "__main__":
    main()

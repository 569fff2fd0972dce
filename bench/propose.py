"""Benchmark: `qblock propose` against a bare ultralytics `YOLO(...).predict` over the same pages.

    python bench/propose.py                  # 200 and 2,000 pages
    python bench/propose.py --pages 200      # one size

Both sides are fresh processes with the same model (yolov8n trained for a few epochs on the demo
pages, so it finds questions and propose writes real crops), the same imgsz and threshold.
The bare side only predicts; qblock also reads EXIF, writes one JSON and the question images
per page. Printed: pages per second of each, the ratio (target >= 0.9), and each side's peak
memory, which must not grow with the page count (pages are handled one at a time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml
from _harness import project_params, work_folder

REPO = Path(__file__).resolve().parents[1]
PEAK = "import atexit, resource, sys; atexit.register(lambda: print('PEAK_KB', " \
       "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
BARE = PEAK + """
import sys
from pathlib import Path
from qblock.model.yolo_env import prepare_ultralytics
prepare_ultralytics(Path.cwd())
from ultralytics import YOLO
model = YOLO(sys.argv[1])
pages = sorted(Path("data/dataset_root/documents").glob("*/pages/*.png"))
for result in model.predict([str(p) for p in pages], stream=True, conf=float(sys.argv[2]), imgsz=int(sys.argv[3]),
                            device="cpu", verbose=False):
    pass
"""
QBLOCK = PEAK + "from qblock.cli import main\nmain()\n"


def run(args: list[str], cwd: Path) -> tuple[float, int]:
    """Seconds and peak memory (MB) of one fresh process."""
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    peak = int(result.stderr.rsplit("PEAK_KB", 1)[1].split()[0])
    return took, peak // 1024


def make_project(work: Path, pages: int) -> Path:
    """A project folder with params.yaml and ``pages`` unlabeled demo pages (copies of 48 renders)."""
    from qblock.labeling.demo_data import write_demo_dataset

    project = work / f"project-{pages}"
    renders = work / "renders"
    if not renders.is_dir():
        write_demo_dataset(renders, 8, 6, seed=1)
    sources = sorted(renders.glob("documents/*/pages/*.png"))
    for i in range(pages):
        target = project / "data" / "dataset_root" / "documents" / f"book {i // 50:03d}" / "pages" / f"p{i:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sources[i % len(sources)], target)
    data = asdict(project_params("train=cpu"))
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return project


def train_model(work: Path) -> Path:
    """yolov8n, a few epochs on the demo: good enough that propose writes a few crops per page."""
    from _training import prepare_demo

    from qblock.model.yolo_env import prepare_ultralytics, ultralytics_dataset

    prepare_ultralytics(work)
    from ultralytics import YOLO

    export_dir, split_dir = prepare_demo(work)
    with ultralytics_dataset(export_dir, split_dir, work) as data_yaml:
        model = YOLO("yolov8n.yaml")
        params = project_params("train=cpu", "train.epochs=25").train.ultralytics_arguments()
        model.train(**params, data=str(data_yaml), project=str(work / "runs"), name="bench", exist_ok=True,
                    plots=False, verbose=False)
    return Path(model.trainer.best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    with work_folder(args.work, "qblock-propose-bench-") as work:
        weights = train_model(work)
        imgsz = str(project_params("train=cpu").train.imgsz)
        print(f"{'pages':>6} {'bare p/s':>9} {'qblock p/s':>10} {'ratio':>6} {'bare MB':>8} {'qblock MB':>9} crops")
        for pages in args.pages:
            project = make_project(work, pages)
            (project / "bare.py").write_text(BARE)
            (project / "qblock_main.py").write_text(QBLOCK)
            env_python = sys.executable
            bare_s, bare_mb = run([env_python, "bare.py", str(weights), str(args.conf), imgsz], project)
            ours_s, ours_mb = run([env_python, "qblock_main.py", "propose", "--model", str(weights), "--conf",
                                   str(args.conf)], project)
            crops = sum(1 for _ in project.glob("data/dataset_root/documents/*/proposals/problems/*.png"))
            print(f"{pages:>6} {pages / bare_s:>9.1f} {pages / ours_s:>10.1f} {bare_s / ours_s:>6.2f} "
                  f"{bare_mb:>8} {ours_mb:>9} {crops}")
            os.chdir(work)


if __name__ == "__main__":
    main()

"""Benchmark: `qblock propose` on the CPU with PyTorch and with the model's OpenVINO copy, beside a bare
ultralytics `YOLO(...).predict` over the same pages.

    python bench/propose.py                      # the demo's yolov8n at 448 and the desktop's yolov8m at 1024
    python bench/propose.py --only yolov8n       # one of them

Every run is a fresh process over the same pages, at the same imgsz and threshold:
- yolov8n at 448 px, trained 25 epochs on the demo pages (so propose writes real crops): 200 pages with bare
  predict, qblock with PyTorch and qblock with the OpenVINO copy (`qblock export-model`); 2,000 pages with the
  OpenVINO copy, whose memory must stay what it was at 200 (the bare call's grows with the list of pages);
- yolov8m at 1024 px (the desktop preset's model), from scratch: its speed is its architecture's, trained
  or not. 100 pages, qblock with PyTorch and with OpenVINO.
Printed: pages per second, peak memory (which must not grow with the page count: pages are handled
one at a time), and each run's speed against qblock with PyTorch on the same pages (target for the
OpenVINO copy at 1024 px: >= 2x).
"""

from __future__ import annotations

import argparse
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
    (project / "bare.py").write_text(BARE)
    (project / "qblock_main.py").write_text(QBLOCK)
    return project


def train_yolov8n(work: Path) -> Path:
    """yolov8n, 25 epochs on the demo at the cpu preset's size: good enough that propose writes crops."""
    from _training import prepare_demo

    from qblock.model.yolo_env import prepare_ultralytics, ultralytics_dataset

    prepare_ultralytics(work)
    from ultralytics import YOLO

    if (work / "runs" / "bench" / "weights" / "best.pt").is_file():  # a kept --work folder: trained already
        return work / "runs" / "bench" / "weights" / "best.pt"
    export_dir, split_dir = prepare_demo(work)
    with ultralytics_dataset(export_dir, split_dir, work) as data_yaml:
        model = YOLO("yolov8n.yaml")
        params = project_params("train=cpu", "train.epochs=25").train.ultralytics_arguments()
        model.train(**params, data=str(data_yaml), project=str(work / "runs"), name="bench", exist_ok=True,
                    plots=False, verbose=False)
    return Path(model.trainer.best)


def untrained(work: Path, architecture: str, imgsz: int) -> Path:
    """A checkpoint of ``architecture`` from scratch that says it was trained at ``imgsz`` (as train writes it)."""
    import torch
    from ultralytics import YOLO

    target = work / f"{architecture}-{imgsz}.pt"
    model = YOLO(f"{architecture}.yaml").model
    torch.save({"model": model, "train_args": {"imgsz": imgsz, "task": "detect"}, "epoch": -1}, target)
    return target


def compare(name: str, weights: Path, imgsz: int, page_counts: list[int], work: Path, conf: float,
            bare: bool) -> None:
    """Every runtime over the same pages; one row each."""
    for pages in page_counts:
        project = make_project(work, pages)
        shutil.copyfile(weights, project / "model.pt")
        propose = [sys.executable, "qblock_main.py", "propose", "--model", "model.pt", "--conf", str(conf)]
        rows = []
        if bare and pages <= 200:  # over a list of 2,000 paths the bare call's memory grows past this machine's
            rows.append(("bare predict", *run([sys.executable, "bare.py", "model.pt", str(conf), str(imgsz)], project)))
        if pages <= 200 or not bare:  # the 2,000-page run is the OpenVINO copy's memory over many pages
            rows.append(("qblock, PyTorch", *run(propose, project)))
        shutil.rmtree(project / ".qblock" / "exported", ignore_errors=True)
        exported = run([sys.executable, "qblock_main.py", "export-model", "--model", "model.pt"], project)[0]
        for proposals in project.glob("data/dataset_root/documents/*/proposals"):
            shutil.rmtree(proposals)  # else the second run finds every page up to date
        rows.append(("qblock, OpenVINO", *run(propose, project)))
        crops = sum(1 for _ in project.glob("data/dataset_root/documents/*/proposals/problems/*.png"))
        torch_s = rows[-2][1] if len(rows) > 1 else rows[-1][1]
        for runtime, seconds, peak in rows:
            print(f"{name:>14} {imgsz:>5} {pages:>6}  {runtime:<17}{pages / seconds:>8.2f}{peak:>9,}"
                  f"{torch_s / seconds:>8.2f}x")
        print(f"{'':>28}({crops} question images; the OpenVINO export took {exported:.0f} s, once per model)")
        shutil.rmtree(project)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["yolov8n", "yolov8m"])
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    with work_folder(args.work, "qblock-propose-bench-") as work:
        print(f"{'model':>14} {'imgsz':>5} {'pages':>6}  {'runtime':<17}{'pages/s':>8}{'peak MB':>9}"
              f"{'speed':>9}  (against qblock with PyTorch)")
        if args.only in (None, "yolov8n"):
            imgsz = project_params("train=cpu").train.imgsz
            compare("yolov8n", train_yolov8n(work), imgsz, [200, 2000], work, args.conf, True)
        if args.only in (None, "yolov8m"):
            from qblock.model.yolo_env import prepare_ultralytics

            prepare_ultralytics(work)
            compare("yolov8m", untrained(work, "yolov8m", 1024), 1024, [100], work, args.conf, False)


if __name__ == "__main__":
    main()

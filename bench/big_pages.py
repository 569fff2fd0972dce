"""Benchmark: importing and exporting big scanned pages, beside the same pages at an app's usual size.

    python bench/big_pages.py                        # 20 pages of 24 megapixels, and 20 of 0.56
    python bench/big_pages.py --pages 100 --megapixels 12 42

Issue 40's drill: 100 PNGs of 12-42 megapixels took 252 s to import, 53 s for a dry run, 60 s for an
unchanged re-import (each run decoded every image for its size) and 238 s to export. The pages here
are drawn (paper with a scanner's grain, text lines, question frames: a PNG of a 24-megapixel page is
about 15 MB), written as
a YOLO export, then timed as a person runs them: `qblock import roboflow` (first), `--dry-run`, the
same import again (unchanged), and `qblock export`. Printed: seconds, seconds a page and a megabyte,
and the ratio big / small per megabyte. Targets (issue 40): an unchanged re-import of 100 pages in
about a second; export as fast per megabyte as for small pages.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import yaml
from _harness import project_params, timed, work_folder
from PIL import Image, ImageChops, ImageDraw

SMALL = (640, 880)  # the demo's page


def draw_page(path: Path, size: tuple[int, int], seed: int) -> list[tuple[float, float, float, float]]:
    """A page of text lines in question frames; the frames as YOLO rows (shares)."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("L", size, 250)
    pen = ImageDraw.Draw(image)
    boxes, y = [], height * 0.06
    while y < height * 0.85:
        h = height * rng.uniform(0.08, 0.16)
        x0, x1 = width * 0.08, width * 0.92
        pen.rectangle((x0, y, x1, y + h), outline=40, width=max(1, width // 800))
        line = y + h * 0.1
        while line < y + h * 0.85:  # text lines: dark runs of random length
            x = x0 + width * 0.02
            while x < x1 - width * 0.1:
                run = width * rng.uniform(0.01, 0.06)
                pen.rectangle((x, line, x + run, line + max(2, height // 250)), fill=rng.randint(10, 60))
                x += run + width * 0.008
            line += max(6, height // 60)
        boxes.append(((x0 + x1) / 2 / width, (y + h / 2) / height, (x1 - x0) / width, h / height))
        y += h + height * 0.02
    grain = Image.effect_noise(size, 6)  # a scanner's grain: what makes a real scan's PNG megabytes, not kilobytes
    ImageChops.add(image, grain, offset=-128).save(path, compress_level=1)
    return boxes


def write_export(root: Path, count: int, size: tuple[int, int], seed: int) -> int:
    """A Roboflow-style YOLO export of ``count`` pages of ``size``; the bytes of its images."""
    images, labels = root / "train" / "images", root / "train" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    (root / "data.yaml").write_text("train: train/images\nnc: 1\nnames: ['question']\n", encoding="utf-8")
    for number in range(count):
        name = f"scan{number // 10}_p{number % 10 + 1:03d}"
        boxes = draw_page(images / f"{name}.png", size, seed + number)
        (labels / f"{name}.txt").write_text("".join(f"0 {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for x, y, w, h in boxes),
                                            encoding="utf-8")
    return sum(p.stat().st_size for p in images.iterdir())


def project(folder: Path) -> Path:
    """A project folder whose params map the export's class to Question_Block."""
    from dataclasses import asdict

    folder.mkdir(parents=True)
    params = asdict(project_params())
    params["export"]["class_map"] = {"question": "Question_Block"}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return folder


def measure(work: Path, name: str, count: int, size: tuple[int, int]) -> dict:
    export = work / f"{name}-export"
    started = time.perf_counter()
    megabytes = write_export(export, count, size, seed=7) / 1e6
    drawn = time.perf_counter() - started
    folder = project(work / f"{name}-project")
    qblock = [sys.executable, "-m", "qblock"]
    result = {"pages": count, "megapixels": round(size[0] * size[1] / 1e6, 2), "megabytes": round(megabytes, 3),
              "drawn_s": round(drawn, 1)}
    result["import_s"] = timed([*qblock, "import", "roboflow", str(export)], folder)
    result["dry_run_s"] = timed([*qblock, "import", "roboflow", str(export), "--dry-run"], folder)
    result["unchanged_s"] = timed([*qblock, "import", "roboflow", str(export)], folder)
    result["export_s"] = timed([*qblock, "export"], folder)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--megapixels", type=float, nargs="+", default=[24.0])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--save", metavar="NAME", help="also write bench/results/big_pages-NAME.json")
    args = parser.parse_args()
    rows = {}
    with work_folder(args.work, "qblock-big-pages-") as work:
        rows["small"] = measure(work, "small", args.pages, SMALL)
        for megapixels in args.megapixels:
            side = (megapixels * 1e6 / (SMALL[0] * SMALL[1])) ** 0.5
            rows[f"{megapixels:g} MP"] = measure(work, f"big{megapixels:g}", args.pages,
                                                 (round(SMALL[0] * side), round(SMALL[1] * side)))
    small = rows["small"]
    print(f"\n{args.pages} pages each; seconds (a page; a megabyte of PNG)\n")
    for name, row in rows.items():
        per = {k: row[k] / row["pages"] for k in ("import_s", "dry_run_s", "unchanged_s", "export_s")}
        ratio = (row["export_s"] / row["megabytes"]) / (small["export_s"] / small["megabytes"])
        print(f"{name:>8}: {row['megapixels']} MP, {row['megabytes']} MB; import {row['import_s']:.1f} s "
              f"({per['import_s']:.2f}/page), dry run {row['dry_run_s']:.1f} s, unchanged re-import "
              f"{row['unchanged_s']:.1f} s ({per['unchanged_s']:.3f}/page), export {row['export_s']:.1f} s "
              f"({row['export_s'] / row['megabytes']:.3f} s/MB; {ratio:.2f}x small pages' per MB)")
    print("(each time includes starting qblock, about a second: the unchanged re-import's floor)")
    if args.save:
        import os
        import platform
        import subprocess

        repo = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=repo).stdout.strip()
        out = repo / "bench" / "results" / f"big_pages-{args.save}.json"
        command = "python bench/big_pages.py " + " ".join(sys.argv[1:])
        out.write_text(json.dumps({"bench": "big_pages", "command": command, "commit": commit,
                                   "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                                   "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1), encoding="utf-8")
        print(f"saved: {out}")


if __name__ == "__main__":
    main()

"""Benchmark: export + split + validate on a large collection, beside a naive one-pass loop.

    python bench/data_stages.py                 # 10,000 pages (copies of 300 renders, each made unique)
    python bench/data_stages.py --pages 2000    # quicker

Prints, from one run on this machine: the cold time of each stage, the time after adding 100
pages, the peak memory of each phase, and the same collection through the naive loop of the
original design note (json + PIL open per page, one label file each), with the ratios.
Targets: at 10,000 pages (issue 3) cold export+split+validate <= 10 s, after adding 100 pages <= 2 s; at 100,000
(issue 25) cold <= 45 s, after adding 100 pages <= 3 s; peak <= 1 GB. Wall and CPU seconds are printed: on a
slow disk a cold run waits on reading the images (the time to read them once is printed as the disk's share).
Each phase runs in a child process so its peak memory is its own. On ext4, making files is several times
slower for a few minutes after many were deleted (the kernel skips inodes it just freed): a cold run
right after deleting a large folder (another run's outputs) measures that too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

from _harness import work_folder

PAGES_PER_DOCUMENT = 50


def unique_copy(png: bytes, text: str) -> bytes:
    """The PNG with a text chunk naming the page after its header: the same pixels, other bytes.

    Every page of a real collection is its own file; validate refuses the same image in train and val."""
    payload = b"Comment\0" + text.encode("utf-8")
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload + struct.pack(">I", zlib.crc32(b"tEXt" + payload))
    return png[:33] + chunk + png[33:]  # 8-byte signature + the 25-byte IHDR chunk


def build_collection(root: Path, pages: int, unique: int, first_document: int = 0) -> None:
    """``pages`` labeled pages in documents of 50; each image is a copy of one of ``unique`` renders
    made distinct by a text chunk (as large on disk as a real collection of these pages)."""
    from qblock.labeling.demo_data import groups_document, render_page

    pool = root / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    boxes_file = pool / "boxes.json"
    boxes = json.loads(boxes_file.read_text()) if boxes_file.exists() else {}
    for index in range(unique):
        if str(index) not in boxes:
            image, page_boxes = render_page(random.Random(index), f"워크북 {index}", index + 1, 1)
            image.save(pool / f"{index}.png")
            boxes[str(index)] = [[b.x, b.y, b.width, b.height] for b in page_boxes]
    boxes_file.write_text(json.dumps(boxes))
    from qblock.labeling.demo_data import Box

    rendered = [(pool / f"{index}.png").read_bytes() for index in range(unique)]

    for n in range(pages):
        document = f"문제집 {first_document + n // PAGES_PER_DOCUMENT:04d}"
        page = f"page_{n % PAGES_PER_DOCUMENT + 1:03d}"
        doc_dir = root / "app" / "documents" / document
        (doc_dir / "pages").mkdir(parents=True, exist_ok=True)
        (doc_dir / "groups").mkdir(parents=True, exist_ok=True)
        source = n % unique
        target = doc_dir / "pages" / f"{page}.png"
        if not target.exists():
            target.write_bytes(unique_copy(rendered[source], f"{document}/{page}"))
        groups = groups_document(page, [Box(*b) for b in boxes[str(source)]])
        (doc_dir / "groups" / f"{page}_groups.json").write_text(json.dumps(groups, ensure_ascii=False))


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers (user + system)."""
    import resource

    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def run_stages(root: Path) -> dict:
    """export, split, validate in this process, as `dvc repro` runs them: the wall and CPU seconds of each."""
    from _harness import project_params
    from rich.console import Console

    from qblock.stages import export, split, validate

    params = project_params()
    os.chdir(root)  # export keeps this machine's file stats in .qblock/ under the working folder
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    stages = {
        "export": lambda: export.run(root / "app", root / "yolo", params.export, root / "reports" / "export.json",
                                     quiet),
        "split": lambda: split.run(root / "yolo", root / "split", params.split, quiet),
        "validate": lambda: validate.run(root / "yolo", root / "split", root / "reports", 0, quiet,
                                         root / "validate_cache.json", dataset_root=root / "app"),
    }
    times = {}
    for stage, run in stages.items():
        start, cpu = time.perf_counter(), cpu_seconds()
        run()
        times[stage], times[f"{stage}_cpu"] = time.perf_counter() - start, cpu_seconds() - cpu
    return times


def run_naive(root: Path) -> dict:
    """The original design note's loop: per groups file, json.load + PIL size + one label file."""
    from PIL import Image

    out = root / "naive_labels"
    out.mkdir(exist_ok=True)
    start = time.perf_counter()
    for groups_file in sorted((root / "app" / "documents").glob("*/groups/*_groups.json")):
        page = groups_file.stem.replace("_groups", "")
        with open(groups_file, encoding="utf-8") as handle:
            data = json.load(handle)
        img_w, img_h = Image.open(groups_file.parent.parent / "pages" / f"{page}.png").size
        labels = []
        for group in data.get("groups", []):
            bbox = group.get("combinedBbox")
            if bbox:
                x = (bbox["x"] + bbox["width"] / 2) / img_w
                y = (bbox["y"] + bbox["height"] / 2) / img_h
                labels.append(f"0 {x:.6f} {y:.6f} {bbox['width'] / img_w:.6f} {bbox['height'] / img_h:.6f}")
        (out / f"{groups_file.parent.parent.name}__{page}.txt").write_text("\n".join(labels))
    return {"naive": time.perf_counter() - start}


def read_every_image(root: Path) -> float:
    """Seconds to read every page image's bytes once (what validate must read at least, cold)."""
    start = time.perf_counter()
    for document in os.scandir(root / "app" / "documents"):
        for page in os.scandir(Path(document.path) / "pages"):
            with open(page.path, "rb") as handle:
                while handle.read(1 << 20):
                    pass
    return time.perf_counter() - start


def in_child(phase: str, root: Path) -> tuple[dict, float]:
    """Run one phase in a fresh process; its result and its peak resident memory in MB.

    The disk is flushed first, so a phase does not pay for writing back the previous one's files.
    """
    if hasattr(os, "sync"):
        os.sync()
    process = subprocess.Popen([sys.executable, __file__, "--child", phase, "--work", str(root)],
                               stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"phase {phase} failed")
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--unique", type=int, default=300, help="distinct rendered pages behind the hard links")
    parser.add_argument("--added", type=int, default=100, help="pages added for the incremental run")
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_naive(args.work) if args.child == "naive" else run_stages(args.work)
        import resource

        result["workers_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps(result))
        return

    with work_folder(args.work, "qblock-bench-") as work:
        measure(work, args.pages, args.unique, args.added)


def start_over(work: Path, pages: int) -> Path:
    """A kept working folder as before its first run: the stages' outputs and caches, and the documents a
    previous run added, moved into a folder that measure() deletes after its last timing; the page images
    stay (writing 8 GB again would take minutes).

    Deleting 200,000 files right before the cold run would slow it down: for a few minutes after, ext4
    skips the inodes it just freed when it makes a file (`recently_deleted` in the kernel's profile), and
    the export makes 100,000 label files. Back-to-back runs still pay for the previous run's cleanup."""
    old = work / f"old-outputs-{os.getpid()}"
    old.mkdir(parents=True, exist_ok=True)
    for output in ("yolo", "split", "reports", "naive_labels", "validate_cache", ".qblock", "validate_cache.json",
                   "validate_cache.npy"):
        if (work / output).exists():
            (work / output).rename(old / output)
    documents = work / "app" / "documents"
    if documents.is_dir():
        last = (pages - 1) // PAGES_PER_DOCUMENT
        for folder in documents.iterdir():
            if int(folder.name.rpartition(" ")[2]) > last:
                folder.rename(old / folder.name)
    return old


def measure(work: Path, pages: int, unique: int, added: int) -> None:
    import shutil

    old = start_over(work, pages)
    try:
        measure_stages(work, pages, unique, added)
    finally:
        shutil.rmtree(old, ignore_errors=True)


def measure_stages(work: Path, pages: int, unique: int, added: int) -> None:
    start = time.perf_counter()
    build_collection(work, pages, unique)
    took = time.perf_counter() - start
    print(f"built {pages} pages ({unique} distinct renders, each page its own file) in {took:.0f} s under {work}")
    naive, naive_mb = in_child("naive", work)
    read_s = read_every_image(work)
    cold, cold_mb = in_child("stages", work)
    first_new = (pages + PAGES_PER_DOCUMENT - 1) // PAGES_PER_DOCUMENT
    build_collection(work, added, unique, first_document=first_new)
    warm, warm_mb = in_child("stages", work)

    cold_total = sum(cold[s] for s in ("export", "split", "validate"))
    warm_total = sum(warm[s] for s in ("export", "split", "validate"))
    print(f"\n{'':24}{'cold':>9}{'(cpu)':>9}{f'+{added} pages':>13}{'(cpu)':>9}")
    for stage in ("export", "split", "validate"):
        print(f"{stage:24}{cold[stage]:>8.2f}s{cold[stage + '_cpu']:>8.2f}s{warm[stage]:>12.2f}s"
              f"{warm[stage + '_cpu']:>8.2f}s")
    print(f"{'export+split+validate':24}{cold_total:>8.2f}s{'':9}{warm_total:>12.2f}s   (targets: 10 s, 2 s at "
          f"10,000 pages; 45 s, 3 s at 100,000)")
    print(f"{'reading every image once':24}{read_s:>8.2f}s   (cat-like, right before the cold run: the disk's part "
          f"of a cold validate)")
    print(f"{'peak memory':24}{cold_mb:>7.0f}MB{'':9}{warm_mb:>11.0f}MB   (target: 1024 MB)")
    print(f"{'  each worker process':24}{cold['workers_mb']:>7.0f}MB{'':9}{warm['workers_mb']:>11.0f}MB   "
          "(one per core; 0 when the work stayed in-process)")
    print(f"\nnaive one-pass loop (labels only: no checks, no image copies, no validation): "
          f"{naive['naive']:.2f}s, peak {naive_mb:.0f} MB")
    print(f"ratio qblock/naive: cold {cold_total / naive['naive']:.2f}x, "
          f"after adding {added} pages {warm_total / naive['naive']:.2f}x "
          f"(the naive loop has no incremental mode: it redoes every page every time)")


if __name__ == "__main__":
    main()

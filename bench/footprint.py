"""Benchmark: how many bytes the pipeline keeps on disk per byte of page images.

    python bench/footprint.py                  # the demo collection (10 workbooks x 8 pages)
    python bench/footprint.py --documents 40   # more pages

For each way of working it builds a fresh copy of this project (git + DVC, a folder NAS), writes
the demo pages, publishes them as the laptop does, then runs `dvc repro` with the smoke preset
(training is not what is measured here: the files it adds to the cache are counted apart). It
prints the bytes of the page images and the bytes the repository uses for them (`data/` plus
`.dvc/cache`, each file counted once however many hard links it has), after publish (dvc add,
export, split, validate) and after `dvc repro`, and the ratio:

- `publish --app` (the app writes its own folder, qblock mirrors it in): the cache link type is
  `hardlink,copy`, so the work tree, the export and the cache share each page;
- the app writes straight into `data/dataset_root`: the cache keeps a copy (`reflink,copy`; a
  hard link would let the app rewrite cached pages in place), the export links to the pages;
- the baseline, as the pipeline was before: the export copies each page and DVC caches it.

The app's own folder (first way) is the person's, outside the repository, and not counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from _harness import work_folder

REPO = Path(__file__).resolve().parents[1]
QBLOCK = [sys.executable, "-m", "qblock"]


def files_on_disk(*folders: Path) -> dict[tuple[int, int], int]:
    """(device, inode) -> bytes of every file under ``folders``: a file with several hard links once."""
    found: dict[tuple[int, int], int] = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                info = path.stat()
                found[(info.st_dev, info.st_ino)] = info.st_size
    return found


def on_disk(*folders: Path) -> int:
    return sum(files_on_disk(*folders).values())


def run(args: list[str], cwd: Path, check: bool = True) -> None:
    env = os.environ | {"DVC_NO_ANALYTICS": "1", "YOLO_OFFLINE": "1",
                        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def project_copy(target: Path) -> Path:
    """This project's tracked files as a fresh git repo (no data, no outputs), the smoke preset, a folder NAS."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in filter(None, listed.stdout.split("\0")):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    (target / "dvc.lock").unlink(missing_ok=True)
    config = target / "conf" / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("  - train: cpu", "  - train: smoke"),
                      encoding="utf-8")
    run(["git", "init", "-q"], target)
    run(["git", "config", "user.name", "bench"], target)
    run(["git", "config", "user.email", "bench@qblock.invalid"], target)
    run([*QBLOCK, "params"], target)
    run(["git", "add", "-A"], target)
    run(["git", "commit", "-qm", "copy"], target)
    run([*QBLOCK, "remote", "set", str(target.parent / "nas")], target)
    return target


def measure(work: Path, way: str, documents: int, pages: int) -> dict:
    repo = project_copy(work / way / "repo")
    app = work / way / "app" if way == "publish --app" else repo / "data" / "dataset_root"
    run([*QBLOCK, "demo-data", str(app), "--documents", str(documents), "--pages", str(pages)], repo)
    page_bytes = on_disk(*(app / "documents").glob("*/pages"))
    if way == "baseline":  # the pipeline before: export copies, DVC caches the export
        dvc_yaml = repo / "dvc.yaml"
        dvc_yaml.write_text(dvc_yaml.read_text(encoding="utf-8").replace("          cache: false    # its images",
                                                                          "          cache: true     # its images"),
                            encoding="utf-8")
        run(["git", "commit", "-qam", "baseline"], repo)
    publish = [*QBLOCK, "publish"] + (["--app", str(app)] if way == "publish --app" else [])
    run(publish, repo, check=False)  # no git origin: only its last step, git push, fails
    if way == "baseline":  # copies instead of links, as the export used to write them
        for image in (repo / "data" / "yolo" / "images").iterdir():
            data = image.read_bytes()
            image.unlink()
            image.write_bytes(data)
        run(["dvc", "commit", "-f", "export"], repo)
    data, cache = repo / "data", repo / ".dvc" / "cache"
    published = files_on_disk(data, cache)
    run(["dvc", "repro"], repo)
    repro = files_on_disk(data, cache)
    trained = sum(size for key, size in repro.items() if key not in published)  # the model, curves, split lists
    return {"pages": page_bytes, "after publish": sum(published.values()),
            "after repro": sum(repro.values()) - trained, "model": trained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10)
    parser.add_argument("--pages", type=int, default=8, help="pages per workbook")
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    with work_folder(args.work, "qblock-footprint-") as work:
        results = {way: measure(work, way, args.documents, args.pages)
                   for way in ("publish --app", "app writes the repo", "baseline")}
    first = next(iter(results.values()))
    print(f"\n{args.documents * args.pages} demo pages, {first['pages'] / 1e6:.1f} MB of page images; "
          "data/ + .dvc/cache, each file once\n")
    print(f"{'':22}{'after publish':>16}{'ratio':>7}{'after dvc repro':>18}{'ratio':>7}{'(training adds)':>17}")
    for way, r in results.items():
        print(f"{way:22}{r['after publish'] / 1e6:>13.1f} MB{r['after publish'] / r['pages']:>6.2f}x"
              f"{r['after repro'] / 1e6:>15.1f} MB{r['after repro'] / r['pages']:>6.2f}x{r['model'] / 1e6:>14.1f} MB")


if __name__ == "__main__":
    main()

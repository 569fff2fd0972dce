"""Stage `validate`: the gate before training.

ultralytics silently skips corrupt images and bad label rows, drops duplicate rows and re-saves
truncated JPEGs in place. Here each of those is a hard error naming the file, so `dvc repro`
stops before training on data that is not what the user labeled. The stage also writes the
dataset statistics (a DVC metric, so `dvc metrics diff` shows what changed in the data) and
draws a few pages with their boxes for a person to look at.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from itertools import chain, repeat
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageDraw
from rich.console import Console

from qblock.config.schema import Params
from qblock.core import collector
from qblock.core.progress import map_pages
from qblock.data.app_folder import AppFolder
from qblock.data.check_cache import CheckCache, content_digest
from qblock.data.contact_sheet import save_contact_sheet
from qblock.data.export_files import find_pages
from qblock.data.export_files import fingerprint as files_fingerprint
from qblock.data.image_checks import image_problem
from qblock.data.label_checks import check_labels
from qblock.data.labels import parse_clean
from qblock.data.problems import Problem, ProblemLog, write_json
from qblock.data.yolo_folder import SPLITS, PageRecord, file_names, read_manifest, split_list


class PageCheck(NamedTuple):
    size: tuple[int, int] | None  # None: not asked for, or broken
    labels: str | None
    problems: list[Problem]
    digest: str | None = None  # of the image's bytes: the same page exported twice has the same one


def check_page(job: tuple[str, str | None, str | None, int]) -> PageCheck:
    """Check one page's image and/or label file (whichever is named). Runs in worker processes."""
    export_dir, image_name, label_name, class_count = job
    image = Path(export_dir, "images", image_name) if image_name else None
    label = Path(export_dir, "labels", label_name) if label_name else None
    log = ProblemLog()
    size = labels = digest = None
    if image is not None:
        try:
            data = image.read_bytes()
            digest = content_digest(data)
        except OSError:
            data = None  # image_problem says what is wrong
        problem, size = image_problem(image, data)
        if problem:
            log.error(image, problem)
            size = None
    if label is not None:
        labels = check_labels(label, class_count, log)
    return PageCheck(size, labels, log.problems, digest)


class Checked(NamedTuple):
    images: list[str]  # every file in images/
    rows: dict[str, int]  # clean image name -> its label's row count
    digests: dict[str, str]  # clean image name -> a hash of its bytes
    boxes: list[Any]  # arrays of every clean label's box widths and heights (n x 2)


def check_files(export_dir: Path, class_count: int, cache: CheckCache, log: ProblemLog,
                expected: dict[str, list[tuple[str, str]]]) -> Checked:
    """Every image and label file checked, or known clean from the cache. ``expected``: each document's
    (image, label) names, from the manifest; a file of no document in it is checked every time."""
    import numpy as np

    grouped, image_files = find_pages(export_dir, expected, log)
    checked = Checked(image_files, {}, {}, [])
    jobs, pending = [], []
    for document, pages in grouped.items():
        fingerprint = files_fingerprint(class_count, pages)
        carried = cache.carry_over(document, fingerprint) if document is not None else None
        if carried is not None:
            checked.rows.update(zip(carried.names, carried.rows, strict=True))
            checked.digests.update(zip(carried.names, carried.digests, strict=True))
            checked.boxes.append(carried.boxes)
            for file, message in carried.warnings:  # a document carried over says what it said
                log.warning(file, message)
            continue
        earlier = cache.earlier_pages(document) if document is not None else {}
        for index, (image_name, label_name) in enumerate(zip(pages.images, pages.labels, strict=True)):
            facts = earlier.get(image_name)
            if facts is not None and facts[:2] != pages.image_stamp(index):
                facts = None  # the image changed: read it again
            jobs.append((str(export_dir), None if facts else image_name, label_name, class_count))
            pending.append((document, fingerprint, image_name, pages.image_stamp(index), facts))
    fresh: dict[str | None, dict] = {}
    broken: set[str | None] = set()
    for (document, fingerprint, image_name, image_stamp, facts), result in zip(
            pending, map_pages(check_page, jobs, "validate"), strict=True):
        log.problems.extend(result.problems)
        if facts is None and result.size is not None:
            facts = [*image_stamp, *result.size, result.digest or ""]
        if facts is None or result.labels is None:
            broken.add(document)
            continue
        values = result.labels.split()
        entry = fresh.setdefault(document, {"fp": fingerprint, "pages": {}, "rows": [], "wh": [], "warnings": []})
        entry["warnings"].extend([p.file, p.message] for p in result.problems if p.severity == "warning")
        entry["pages"][image_name] = facts
        entry["rows"].append(len(values) // 5)
        entry["wh"].extend(values[i * 5 + 3 : i * 5 + 5] for i in range(len(values) // 5))
    for document, entry in fresh.items():
        boxes = np.array(entry["wh"], dtype=np.float64).reshape(-1, 2)
        checked.rows.update(zip(entry["pages"], entry["rows"], strict=True))
        checked.digests.update((name, facts[4]) for name, facts in entry["pages"].items())
        checked.boxes.append(boxes)
        if document is not None and document not in broken:
            cache.keep(document, entry["fp"], entry["pages"], entry["rows"], boxes, entry["warnings"])
    return checked


def check_duplicates(lists: dict[str, list[str]], digests: dict[str, str], rows: dict[str, int],
                     export_dir: Path, log: ProblemLog, shown: Callable[[str], str]) -> None:
    """The same image twice (the same pages imported twice, a copied document): in train and in val or
    test, val measures pages the model trained on, an error naming both; in one split, a warning.
    Blank pages with no questions may repeat anywhere: a warning. ``shown``: how to name an image (by its name)."""
    if len(set(digests.values())) == len(digests) and _each_once(lists):
        return  # no two images alike, no entry listed twice: nothing to name (the common case, in C)
    seen: dict[str, tuple[str, str]] = {}
    for split, entries in lists.items():
        for entry in entries:
            name = entry.rpartition("/")[2]
            digest = digests.get(name)
            if not digest:
                continue
            if digest not in seen:
                seen[digest] = (split, name)
                continue
            first_split, first = seen[digest]
            same = f"the same image as {shown(first)} ({first_split})"
            if split != first_split and (rows.get(name) or rows.get(first)):
                log.error(export_dir / "images" / name, f"{same}, and this one is in {split}: {split} would "
                          f"measure a page the model trained on. Remove the copy (or pin both documents to one "
                          f"split in conf/config.yaml, split.pin)")
            else:
                log.warning(export_dir / "images" / name, f"{same}, in {split} too")


def read_split_lists(split_dir: Path, log: ProblemLog) -> dict[str, list[str]]:
    lists = {split: entries for split in SPLITS if (entries := split_list(split_dir, split)) is not None}
    if not lists.get("train"):
        log.error(split_dir / "train.txt", "missing or empty: nothing to train on")
    if not lists.get("val"):
        log.error(split_dir / "val.txt", "missing or empty: nothing to measure mAP on")
    return lists


def _each_once(lists: dict[str, list[str]]) -> bool:
    """Whether no entry is in the split lists twice (in one list or two)."""
    every = list(chain.from_iterable(lists.values()))
    return len(set(every)) == len(every)


def check_split_lists(lists: dict[str, list[str]], export_dir: Path, split_dir: Path, log: ProblemLog,
                      images: list[str]) -> None:
    existing = {f"images/{name}" for name in images}
    if _each_once(lists) and sum(map(len, lists.values())) == len(existing) \
            and existing.issuperset(chain.from_iterable(lists.values())):
        return  # every image in exactly one list (the common case, in C)
    names = sorted(images)
    owner: dict[str, str] = {}
    for split, entries in lists.items():
        for entry in entries:
            if entry in owner:
                log.error(split_dir / f"{split}.txt", f"{entry} is also in {owner[entry]}.txt")
            owner[entry] = split
            if entry not in existing:
                log.error(split_dir / f"{split}.txt", f"lists {entry}, which does not exist")
    unlisted = [name for name in names if f"images/{name}" not in owner]
    if len(unlisted) == 1:
        log.error(export_dir / "images" / unlisted[0], "is in no split list")
    elif unlisted:  # one line for them all: a split older than the export, not one fault per page
        shown = ", ".join(unlisted[:5]) + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else "")
        log.error(split_dir, f"{len(unlisted)} exported pages are in no split list ({shown}): run the split "
                  "stage again (`dvc repro` does)")


def box_statistics(rows: dict[str, int], boxes: list[Any]) -> dict:
    """Pages, boxes and box sizes (shares of the page) of the clean pages: their label row counts, and arrays
    of every box's width and height."""
    import numpy as np

    per_page = list(rows.values())
    sizes = np.concatenate(boxes) if boxes else np.zeros((0, 2))
    widths, heights = sizes[:, 0], sizes[:, 1]
    stats = {
        "pages": len(rows),
        "boxes": len(sizes),
        "negative_pages": per_page.count(0),
        "boxes_per_page_mean": round(statistics.fmean(per_page), 3) if per_page else 0.0,
        "boxes_per_page_max": max(per_page, default=0),
    }
    if len(sizes):
        stats |= {
            "box_area_median": round(float(np.median(widths * heights)), 5),  # share of the page
            "box_area_min": round(float((widths * heights).min()), 5),
            "box_width_median": round(float(np.median(widths)), 4),
            "box_height_median": round(float(np.median(heights)), 4),
        }
    return stats


def draw_samples(export_dir: Path, clean: Iterable[str], count: int, out: Path) -> None:
    """A grid of a few clean pages with their boxes, for a person to check the labels by eye."""
    names = sorted(clean)
    if not names or count <= 0:
        return
    step = max(1, len(names) // count)
    chosen = names[::step][:count]
    thumb_h = 420
    tiles = []
    for name in chosen:
        with Image.open(export_dir / "images" / name) as image:
            page = image.convert("RGB")
        draw = ImageDraw.Draw(page)
        width = max(2, page.width // 250)
        label = (export_dir / "labels" / name).with_suffix(".txt")
        for row in parse_clean(label.read_text(encoding="utf-8")):
            draw.rectangle(row.to_pixels(page.width, page.height), outline=(220, 30, 30), width=width)
        scale = thumb_h / page.height
        tiles.append(page.resize((max(1, int(page.width * scale)), thumb_h)))
    save_contact_sheet(tiles, out)


def in_the_app(problems: list[Problem], pages: list[PageRecord], export_dir: Path, dataset_root: Path
               ) -> list[Problem]:
    """Problems of exported files named by the file a person opens: the page image or groups file in the
    app's dataset_root, with the exported copy in brackets (`data/yolo/images/doc__page.png` is not a
    path anyone made)."""
    records = {}
    for page in pages:
        records[str(export_dir / "images" / page.image_name)] = (page, dataset_root / page.image)
        records[str(export_dir / "labels" / page.label_name)] = (
            page, AppFolder(dataset_root).groups_file(page.document, page.page))
    named = []
    for problem in problems:
        found = records.get(problem.file)
        if found is not None:
            problem = Problem(f"{found[1].as_posix()} [exported copy: {problem.file}]", problem.message,
                              problem.severity)
        named.append(problem)
    return named


@collector.paused()  # bookkeeping over every page: no cycles to find (core/collector.py)
def run(export_dir: Path, split_dir: Path, reports_dir: Path, sample_pages: int, console: Console,
        cache_file: Path | None = None, dataset_root: Path | None = None) -> dict:
    manifest = read_manifest(export_dir)
    class_names = manifest.summary["class_names"]
    log = ProblemLog()
    cache = CheckCache(cache_file or Path(".qblock") / "cache" / "validated.json")
    expected = {name: file_names(name, data) for name, data in manifest.documents.items()}
    found = check_files(export_dir, len(class_names), cache, log, expected)
    lists = read_split_lists(split_dir, log)
    check_split_lists(lists, export_dir, split_dir, log, found.images)

    in_app: dict[str, str] = {}

    def shown(image_name: str) -> str:  # the page in the app's folder, indexed on the first duplicate only
        if dataset_root is None:
            return image_name
        if not in_app:
            in_app.update((p.image_name, (dataset_root / p.image).as_posix()) for p in manifest.pages)
        return in_app.get(image_name, image_name)

    check_duplicates(lists, found.digests, found.rows, export_dir, log, shown)
    if dataset_root is not None and log.problems:
        log.problems = in_the_app(log.problems, manifest.pages, export_dir, dataset_root)

    stats = {"classes": len(class_names)} | box_statistics(found.rows, found.boxes)
    for split, entries in lists.items():
        stats[f"{split}_pages"] = len(entries)
        stats[f"{split}_boxes"] = sum(map(found.rows.get, [e.rpartition("/")[2] for e in entries], repeat(0)))
    documents = json.loads((split_dir / "split.json").read_text(encoding="utf-8"))["documents"] \
        if (split_dir / "split.json").is_file() else {}
    stats["documents"] = len(documents)
    cache.save()
    write_json(reports_dir / "validate.json", {"ok": not log.errors, "stats": stats, "problems": log.as_json()})
    log.report(console, "validate")
    write_json(reports_dir / "data_stats.json", stats)
    draw_samples(export_dir, found.rows, sample_pages, reports_dir / "samples.png")
    console.print(
        f"validate: ok. {stats['pages']} pages, {stats['boxes']} boxes, {stats['negative_pages']} negative pages; "
        + ", ".join(f"{s} {stats[f'{s}_pages']} pages" for s in lists)
        + f"; sample pages drawn in {reports_dir / 'samples.png'}"
    )
    return stats


def main(params: Params, console: Console) -> None:
    paths = params.paths
    run(Path(paths.export_dir), Path(paths.split_dir), Path(paths.reports_dir), params.validate.sample_pages, console,
        dataset_root=Path(paths.dataset_root))

"""Stage `validate`: the gate before training.

ultralytics silently skips corrupt images and bad label rows, drops duplicate rows and re-saves
truncated JPEGs in place. Here each of those is a hard error naming the file, so `dvc repro`
stops before training on data that is not what the user labeled. The stage also writes the
dataset statistics (a DVC metric, so `dvc metrics diff` shows what changed in the data) and
draws a few pages with their boxes for a person to look at.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import statistics
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw, UnidentifiedImageError
from rich.console import Console

from qblock.config.schema import Params
from qblock.core.progress import map_pages
from qblock.data.app_dataset import GROUPS_SUFFIX
from qblock.data.contact_sheet import save_contact_sheet
from qblock.data.labels import LabelRow, parse_clean, parse_row
from qblock.data.problems import Problem, ProblemLog, write_json
from qblock.data.yolo_folder import SPLITS, read_pages, split_list
from qblock.data.yolo_folder import image_name as image_name_of

MIN_IMAGE_SIDE = 10  # ultralytics skips smaller images


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_problem(data: bytes) -> tuple[str | None, tuple[int, int]]:
    """Walk a PNG's chunks checking each CRC, as ``PIL.Image.verify`` does, straight off the bytes.

    Pillow's verify costs ~0.3 ms a page in Python-level chunk handling; this costs ~0.03 ms, which
    is most of validate's cold time at 10,000 pages. A truncated or bit-flipped file fails.
    """
    if len(data) < 33 or data[12:16] != b"IHDR":
        return "corrupt or truncated image: no PNG header", (0, 0)
    size = struct.unpack_from(">II", data, 16)
    offset, view = 8, memoryview(data)
    while offset + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        end = offset + 12 + length
        if end > len(data):
            return f"corrupt or truncated image: PNG chunk {kind!r} at byte {offset} runs past the end", size
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[offset + 4 : end - 4]) != crc:
            return f"corrupt or truncated image: PNG chunk {kind!r} at byte {offset} fails its CRC", size
        if kind == b"IEND":
            return None, size
        offset = end
    return "corrupt or truncated image: the PNG ends before its IEND chunk", size


def image_problem(path: Path, data: bytes | None = None) -> tuple[str | None, tuple[int, int]]:
    """What is wrong with an image file (None if nothing), and its size.

    PNG: every chunk's CRC is checked (a truncated or bit-flipped file fails) without decoding
    the pixels. JPEG: the end-of-image marker must be there, the same test ultralytics uses
    before it silently re-saves the file. Anything else is decoded.
    """
    try:
        data = path.read_bytes() if data is None else data
    except OSError as exc:
        return f"cannot read the image: {exc}", (0, 0)
    kind: str | None
    if data.startswith(PNG_SIGNATURE):
        problem, size = png_problem(data)
        kind = "PNG"
    else:
        problem = None
        try:
            with Image.open(io.BytesIO(data)) as image:
                size, kind = image.size, image.format
                if kind == "JPEG":
                    if not data.endswith(b"\xff\xd9"):
                        return "truncated JPEG (no end-of-image marker)", size
                else:
                    image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            return f"corrupt or truncated image: {exc}", (0, 0)
    if problem:
        return problem, size
    if kind not in ("PNG", "JPEG"):
        return f"unsupported image format {kind}", size
    if min(size) < MIN_IMAGE_SIDE:
        return f"image is {size[0]}x{size[1]}, below {MIN_IMAGE_SIDE} pixels a side", size
    return None, size


class CheckCache:
    """Remembers clean files by (size, mtime) so a re-run checks only new or changed ones.

    Entries: ``images/NAME`` -> [size, mtime_ns, width, height]; ``labels/NAME`` -> [size,
    mtime_ns, class_count, text]. Only the entries of this run's clean files are saved.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, list] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}
        self.fresh: dict[str, list] = {}

    def get(self, key: str, stamp: list[int], *extra: object) -> list | None:
        """The cached facts after the stamp (and ``extra``) when they still match, else None."""
        cached = self.entries.get(key)
        head = len(stamp) + len(extra)
        if cached and cached[:head] == [*stamp, *extra]:
            self.fresh[key] = cached
            return cached[head:]
        return None

    def put(self, key: str, stamp: list[int], *facts: object) -> None:
        self.fresh[key] = [*stamp, *facts]

    def save(self) -> None:
        write_json(self.path, self.fresh, compact=True)


def check_labels(path: Path, class_count: int, log: ProblemLog) -> str | None:
    """The label file's rows as text when every row is valid and distinct, else None (errors logged)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        log.error(path, f"cannot read the label file: {exc}")
        return None
    rows: list[str] = []
    seen: dict[tuple, int] = {}
    ok = True
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            row = _plain_row(fields, class_count) or parse_row(line, class_count)
        except ValueError as exc:
            log.error(path, f"line {number}: {exc}: {line.strip()!r}")
            ok = False
            continue
        key = (row.cls, row.x, row.y, row.w, row.h)  # ultralytics drops exact duplicates
        if key in seen:
            log.error(path, f"line {number} duplicates line {seen[key]}")
            ok = False
            continue
        seen[key] = number
        rows.append(" ".join(fields))
    return "".join(row + "\n" for row in rows) if ok else None


def _plain_row(fields: list[str], class_count: int) -> LabelRow | None:
    """The row when it is plainly valid (the common case, checked fast), else None: ask parse_row why."""
    if len(fields) != 5 or not fields[0].isdigit():
        return None
    try:
        cls, x, y, w, h = int(fields[0]), float(fields[1]), float(fields[2]), float(fields[3]), float(fields[4])
    except ValueError:
        return None
    if cls < class_count and 0 < w <= 1 and 0 < h <= 1 and w / 2 <= x <= 1 - w / 2 and h / 2 <= y <= 1 - h / 2:
        return LabelRow(cls, x, y, w, h)
    return None


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
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        except OSError:
            data = None  # image_problem says what is wrong
        problem, size = image_problem(image, data)
        if problem:
            log.error(image, problem)
            size = None
    if label is not None:
        labels = check_labels(label, class_count, log)
    return PageCheck(size, labels, log.problems, digest)


def _listing(folder: Path) -> dict[str, tuple[str, list[int]]]:
    """stem -> (file name, [size, mtime_ns]) for the files in a folder, from one directory listing."""
    listing = {}
    for entry in os.scandir(folder):
        stat = entry.stat()
        listing[entry.name.rsplit(".", 1)[0]] = (entry.name, [stat.st_size, stat.st_mtime_ns])
    return listing


def check_files(export_dir: Path, class_count: int, cache: CheckCache, log: ProblemLog,
                digests: dict[str, str] | None = None) -> dict[str, str]:
    """Every image and label file checked (or known clean from the cache): image name -> label text;
    each clean image's content hash into ``digests``."""
    digests = {} if digests is None else digests
    with ThreadPoolExecutor(2) as pool:  # a stat per file, 200,000 at 100,000 pages: the two folders at once
        images, all_labels = pool.map(_listing, (export_dir / "images", export_dir / "labels"))
    labels = {stem: v for stem, v in all_labels.items() if v[0].endswith(".txt")}
    for stem in sorted(images.keys() - labels.keys()):
        log.error(export_dir / "images" / images[stem][0],
                  "image without a label file (an empty .txt marks a page with no questions)")
    for stem in sorted(labels.keys() - images.keys()):
        log.error(export_dir / "labels" / labels[stem][0], "label file without an image")
    clean: dict[str, str] = {}
    jobs, pending = [], []
    for stem in sorted(images.keys() & labels.keys()):
        (image_name, image_stamp), (label_name, label_stamp) = images[stem], labels[stem]
        size = cache.get(f"images/{image_name}", image_stamp)  # [width, height, digest] when known clean
        if size is not None and len(size) < 3:  # a cache from before digests: check (and hash) again
            size = None
        elif size is not None:
            digests[image_name] = size[2]
        text = cache.get(f"labels/{label_name}", label_stamp, class_count)  # [text] when known clean
        if size is not None and text is not None:
            clean[image_name] = text[0]
            continue
        jobs.append((str(export_dir), None if size else image_name, None if text else label_name, class_count))
        pending.append((stem, size is not None, text[0] if text else None))
    for (stem, image_ok, text), result in zip(pending, map_pages(check_page, jobs, "validate"), strict=True):
        (image_name, image_stamp), (label_name, label_stamp) = images[stem], labels[stem]
        log.problems.extend(result.problems)
        if result.size is not None:
            cache.put(f"images/{image_name}", image_stamp, *result.size, result.digest)
            digests[image_name] = result.digest or ""
        if result.labels is not None:
            cache.put(f"labels/{label_name}", label_stamp, class_count, result.labels)
        known = text if text is not None else result.labels
        if (image_ok or result.size is not None) and known is not None:
            clean[image_name] = known
    return clean


def check_duplicates(lists: dict[str, list[str]], digests: dict[str, str], labels: dict[str, str],
                     export_dir: Path, log: ProblemLog, shown: Callable[[str], str]) -> None:
    """The same image twice (the same pages imported twice, a copied document): in train and in val or
    test, val measures pages the model trained on, an error naming both; in one split, a warning.
    Blank pages with no questions may repeat anywhere: a warning. ``shown``: how to name an image (by its name)."""
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
            if split != first_split and (labels.get(name, "").strip() or labels.get(first, "").strip()):
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


def check_split_lists(lists: dict[str, list[str]], export_dir: Path, split_dir: Path, log: ProblemLog) -> None:
    names = sorted(os.listdir(export_dir / "images"))
    existing = {f"images/{name}" for name in names}
    owner: dict[str, str] = {}
    for split, entries in lists.items():
        for entry in entries:
            if entry in owner:
                log.error(split_dir / f"{split}.txt", f"{entry} is also in {owner[entry]}.txt")
            owner[entry] = split
            if entry not in existing:
                log.error(split_dir / f"{split}.txt", f"lists {entry}, which does not exist")
    for name in names:
        if f"images/{name}" not in owner:
            log.error(export_dir / "images" / name, "is in no split list")


def box_statistics(labels: dict[str, str]) -> dict:
    """Pages, boxes and box sizes (shares of the page) of clean label texts (a row a line, each ending in a
    newline)."""
    import numpy as np

    texts = list(labels.values())
    per_page = [text.count("\n") for text in texts]
    rows = np.fromstring("".join(texts), sep=" ").reshape(-1, 5) if texts else np.zeros((0, 5))  # C parsing
    widths, heights = rows[:, 3], rows[:, 4]
    stats = {
        "pages": len(labels),
        "boxes": len(rows),
        "negative_pages": per_page.count(0),
        "boxes_per_page_mean": round(statistics.fmean(per_page), 3) if per_page else 0.0,
        "boxes_per_page_max": max(per_page, default=0),
    }
    if len(rows):
        stats |= {
            "box_area_median": round(float(np.median(widths * heights)), 5),  # share of the page
            "box_area_min": round(float((widths * heights).min()), 5),
            "box_width_median": round(float(np.median(widths)), 4),
            "box_height_median": round(float(np.median(heights)), 4),
        }
    return stats


def draw_samples(export_dir: Path, labels: dict[str, str], count: int, out: Path) -> None:
    """A grid of a few pages with their boxes, for a person to check the labels by eye."""
    names = sorted(labels)
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
        for row in parse_clean(labels[name]):
            draw.rectangle(row.to_pixels(page.width, page.height), outline=(220, 30, 30), width=width)
        scale = thumb_h / page.height
        tiles.append(page.resize((max(1, int(page.width * scale)), thumb_h)))
    save_contact_sheet(tiles, out)


def in_the_app(problems: list[Problem], pages: list[dict], export_dir: Path, dataset_root: Path) -> list[Problem]:
    """Problems of exported files named by the file a person opens: the page image or groups file in the
    app's dataset_root, with the exported copy in brackets (`data/yolo/images/doc__page.png` is not a
    path anyone made)."""
    records = {}
    for page in pages:
        records[str(export_dir / "images" / image_name_of(page))] = (page, dataset_root / page["image"])
        records[str(export_dir / "labels" / f"{page['key']}.txt")] = (
            page, dataset_root / "documents" / page["document"] / "groups" / f"{page['page']}{GROUPS_SUFFIX}")
    named = []
    for problem in problems:
        found = records.get(problem.file)
        if found is not None:
            problem = Problem(f"{found[1].as_posix()} [exported copy: {problem.file}]", problem.message,
                              problem.severity)
        named.append(problem)
    return named


def run(export_dir: Path, split_dir: Path, reports_dir: Path, sample_pages: int, console: Console,
        cache_file: Path | None = None, dataset_root: Path | None = None) -> dict:
    summary, pages = read_pages(export_dir)
    class_names = summary["class_names"]
    log = ProblemLog()
    checked = CheckCache(cache_file or Path(".qblock") / "cache" / "validated.json")
    digests: dict[str, str] = {}
    labels = check_files(export_dir, len(class_names), checked, log, digests)
    lists = read_split_lists(split_dir, log)
    check_split_lists(lists, export_dir, split_dir, log)

    in_app: dict[str, str] = {}

    def shown(image_name: str) -> str:  # the page in the app's folder, indexed on the first duplicate only
        if dataset_root is None:
            return image_name
        if not in_app:
            in_app.update((image_name_of(p), (dataset_root / p["image"]).as_posix()) for p in pages)
        return in_app.get(image_name, image_name)

    check_duplicates(lists, digests, labels, export_dir, log, shown)
    if dataset_root is not None and log.problems:
        log.problems = in_the_app(log.problems, pages, export_dir, dataset_root)

    stats = {"classes": len(class_names)} | box_statistics(labels)
    for split, entries in lists.items():
        stats[f"{split}_pages"] = len(entries)
        stats[f"{split}_boxes"] = sum(labels.get(e.rpartition("/")[2], "").count("\n") for e in entries)
    documents = json.loads((split_dir / "split.json").read_text(encoding="utf-8"))["documents"] \
        if (split_dir / "split.json").is_file() else {}
    stats["documents"] = len(documents)
    checked.save()
    write_json(reports_dir / "validate.json", {"ok": not log.errors, "stats": stats, "problems": log.as_json()})
    log.report(console, "validate")
    write_json(reports_dir / "data_stats.json", stats)
    draw_samples(export_dir, labels, sample_pages, reports_dir / "samples.png")
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

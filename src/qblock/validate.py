"""Stage `validate`: the gate before training.

ultralytics silently skips corrupt images and bad label rows, drops duplicate rows and re-saves
truncated JPEGs in place. Here each of those is a hard error naming the file, so `dvc repro`
stops before training on data that is not what the user labeled. The stage also writes the
dataset statistics (a DVC metric, so `dvc metrics diff` shows what changed in the data) and
draws a few pages with their boxes for a person to look at.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from PIL import Image, ImageDraw, UnidentifiedImageError
from rich.console import Console

from qblock.config import Params
from qblock.errors import UserError
from qblock.labels import LabelRow, parse_row
from qblock.problems import ProblemLog, write_json
from qblock.progress import track
from qblock.split import SPLITS

MIN_IMAGE_SIDE = 10  # ultralytics skips smaller images


def image_problem(path: Path) -> tuple[str | None, tuple[int, int]]:
    """What is wrong with an image file (None if nothing), and its size.

    PNG: every chunk's CRC is checked (a truncated or bit-flipped file fails) without decoding
    the pixels, 30x faster than a full decode. JPEG: the end-of-image marker must be there, the
    same test ultralytics uses before it silently re-saves the file. Anything else is decoded.
    """
    try:
        with Image.open(path) as image:
            size, kind = image.size, image.format
            if kind == "PNG":
                image.verify()
            elif kind == "JPEG":
                with path.open("rb") as handle:
                    handle.seek(-2, 2)
                    if handle.read() != b"\xff\xd9":
                        return "truncated JPEG (no end-of-image marker)", size
            else:
                image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"corrupt or truncated image: {exc}", (0, 0)
    if kind not in ("PNG", "JPEG"):
        return f"unsupported image format {kind}", size
    if min(size) < MIN_IMAGE_SIDE:
        return f"image is {size[0]}x{size[1]}, below {MIN_IMAGE_SIDE} pixels a side", size
    return None, size


class CheckCache:
    """Remembers clean files by (size, mtime) so a re-run checks only new or changed ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, list] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}
        self.fresh: dict[str, list] = {}

    def _lookup(self, path: Path) -> tuple[str, list[int], list | None]:
        stat = path.stat()
        key, stamp = f"{path.parent.name}/{path.name}", [stat.st_size, stat.st_mtime_ns]
        cached = self.entries.get(key)
        if cached and cached[:2] == stamp:
            self.fresh[key] = cached
            return key, stamp, cached[2:]
        return key, stamp, None

    def image(self, image: Path, log: ProblemLog) -> tuple[int, int] | None:
        key, stamp, cached = self._lookup(image)
        if cached is not None:
            return cached[0], cached[1]
        problem, size = image_problem(image)
        if problem:
            log.error(image, problem)
            return None
        self.fresh[key] = [*stamp, *size]
        return size

    def labels(self, label: Path, class_count: int, log: ProblemLog) -> list[LabelRow] | None:
        key, stamp, cached = self._lookup(label)
        if cached is not None and cached[0] == class_count:
            return [LabelRow(int(r[0]), *r[1:]) for r in cached[1]]
        rows = check_labels(label, class_count, log)
        if rows is not None:
            self.fresh[key] = [*stamp, class_count, [[r.cls, r.x, r.y, r.w, r.h] for r in rows]]
        return rows

    def save(self) -> None:
        write_json(self.path, self.fresh, compact=True)


def check_labels(path: Path, class_count: int, log: ProblemLog) -> list[LabelRow] | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        log.error(path, f"cannot read the label file: {exc}")
        return None
    rows: list[LabelRow] = []
    seen: dict[str, int] = {}
    ok = True
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = parse_row(line, class_count)
        except ValueError as exc:
            log.error(path, f"line {number}: {exc}: {line.strip()!r}")
            ok = False
            continue
        key = row.format()
        if key in seen:
            log.error(path, f"line {number} duplicates line {seen[key]}")
            ok = False
            continue
        seen[key] = number
        rows.append(row)
    return rows if ok else None


def read_split_lists(split_dir: Path, log: ProblemLog) -> dict[str, list[str]]:
    lists = {}
    for split in SPLITS:
        path = split_dir / f"{split}.txt"
        if path.is_file():
            lists[split] = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
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


def box_statistics(labels: dict[str, list[LabelRow]]) -> dict:
    boxes = [row for rows in labels.values() for row in rows]
    per_page = [len(rows) for rows in labels.values()]
    stats = {
        "pages": len(labels),
        "boxes": len(boxes),
        "negative_pages": sum(1 for n in per_page if n == 0),
        "boxes_per_page_mean": round(statistics.fmean(per_page), 3) if per_page else 0.0,
        "boxes_per_page_max": max(per_page, default=0),
    }
    if boxes:
        areas = [row.w * row.h for row in boxes]
        stats |= {
            "box_area_median": round(statistics.median(areas), 5),  # share of the page
            "box_area_min": round(min(areas), 5),
            "box_width_median": round(statistics.median(row.w for row in boxes), 4),
            "box_height_median": round(statistics.median(row.h for row in boxes), 4),
        }
    return stats


def draw_samples(export_dir: Path, labels: dict[str, list[LabelRow]], count: int, out: Path) -> None:
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
        for row in labels[name]:
            draw.rectangle(row.to_pixels(page.width, page.height), outline=(220, 30, 30), width=width)
        scale = thumb_h / page.height
        tiles.append(page.resize((max(1, int(page.width * scale)), thumb_h)))
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 8 * (len(tiles) + 1), thumb_h + 16), "gray")
    x = 8
    for tile in tiles:
        sheet.paste(tile, (x, 8))
        x += tile.width + 8
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def run(export_dir: Path, split_dir: Path, reports_dir: Path, sample_pages: int, console: Console,
        cache_file: Path | None = None) -> dict:
    manifest_file = export_dir / "manifest.json"
    try:
        class_names = json.loads(manifest_file.read_text(encoding="utf-8"))["summary"]["class_names"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{manifest_file}: cannot read the export manifest ({exc}); run the export stage") from None
    log = ProblemLog()
    images = {p.stem: p for p in (export_dir / "images").iterdir()}
    label_files = {p.stem: p for p in (export_dir / "labels").iterdir() if p.suffix == ".txt"}
    for stem in sorted(images.keys() - label_files.keys()):
        log.error(images[stem], "image without a label file (an empty .txt marks a page with no questions)")
    for stem in sorted(label_files.keys() - images.keys()):
        log.error(label_files[stem], "label file without an image")
    labels: dict[str, list[LabelRow]] = {}
    checked = CheckCache(cache_file or Path(".qblock") / "cache" / "validated.json")
    for stem in track(sorted(images.keys() & label_files.keys()), "validate"):
        size = checked.image(images[stem], log)
        rows = checked.labels(label_files[stem], len(class_names), log)
        if size is not None and rows is not None:
            labels[images[stem].name] = rows
    lists = read_split_lists(split_dir, log)
    check_split_lists(lists, export_dir, split_dir, log)

    stats = {"classes": len(class_names)} | box_statistics(labels)
    for split, entries in lists.items():
        stats[f"{split}_pages"] = len(entries)
        stats[f"{split}_boxes"] = sum(len(labels.get(Path(e).name, [])) for e in entries)
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
    run(Path(paths.export_dir), Path(paths.split_dir), Path(paths.reports_dir), params.validate.sample_pages, console)

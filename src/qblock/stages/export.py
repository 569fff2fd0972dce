"""Stage `export`: the app's groups JSON and page images -> one flat YOLO folder.

Rules (each outcome names the file):

errors (the stage stops, nothing is replaced): malformed JSON; `groups` missing or not a list;
a group that is not an object or has no `combinedBbox`; a box with a non-numeric, NaN, zero or
negative value; a box running off the page by more than `export.max_overhang`; a groups file
without its page image; an image that cannot be opened; a group whose class cannot be mapped.

warnings (the stage goes on): a box running off the page by up to `max_overhang` (clipped);
a duplicated box (kept once; `duplicate_boxes: error` makes it an error); an image with an EXIF
rotation (boxes are taken in the rotated, displayed frame, as the app shows the page).

counted: a page with an empty `groups` list is a negative example; a page image without a
groups file is not labeled yet and is left out.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, cast

from PIL import Image, ImageOps
from rich.console import Console

from qblock.config.schema import ExportParams, Params
from qblock.core import files
from qblock.core.errors import UserError
from qblock.core.progress import map_pages, track
from qblock.data.app_dataset import (
    PageSource,
    name_problems,
    outside_links,
    read_groups,
    read_page_header,
    scan_documents,
)
from qblock.data.labels import LabelRow
from qblock.data.page_image import as_page
from qblock.data.problems import Problem, ProblemLog, write_json
from qblock.data.yolo_folder import Manifest, PageRecord, read_manifest, write_manifest

_PLAIN = (int, float)  # not bool, not str


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def convert_box(
    bbox: object, width: int, height: int, max_overhang: float, file: str, group: str, log: ProblemLog
) -> tuple[float, float, float, float] | None:
    """A combinedBbox -> clipped pixel corners, or None (with an error logged)."""
    if type(bbox) is dict:  # the fast path: four plain numbers, a box inside the page
        x, y, w, h = (cast(Any, bbox.get(k)) for k in ("x", "y", "width", "height"))
        if type(x) in _PLAIN and type(y) in _PLAIN and type(w) in _PLAIN and type(h) in _PLAIN \
                and math.isfinite(x + y + w + h) and w > 0 and h > 0 and x >= 0 and y >= 0 \
                and x + w <= width and y + h <= height and w >= 1 and h >= 1:
            return float(x), float(y), float(x + w), float(y + h)
    return _checked_box(bbox, width, height, max_overhang, file, group, log)


def _checked_box(
    bbox: object, width: int, height: int, max_overhang: float, file: str, group: str, log: ProblemLog
) -> tuple[float, float, float, float] | None:
    if not isinstance(bbox, dict):
        log.error(file, f"{group}: combinedBbox is not an object with x, y, width, height")
        return None
    values = {k: _number(bbox.get(k)) for k in ("x", "y", "width", "height")}
    bad = [k for k, v in values.items() if v is None]
    if bad:
        shown = ", ".join(f"{k}={bbox.get(k)!r}" for k in bad)
        log.error(file, f"{group}: combinedBbox has a missing or non-numeric value: {shown}")
        return None
    x, y, w, h = (cast(float, values[k]) for k in ("x", "y", "width", "height"))
    if w <= 0 or h <= 0:
        log.error(file, f"{group}: combinedBbox has a zero or negative size: width={w:g}, height={h:g}")
        return None
    x0, y0, x1, y1 = x, y, x + w, y + h
    over_x = max(0.0, -x0, x1 - width) / width
    over_y = max(0.0, -y0, y1 - height) / height
    if over_x > max_overhang or over_y > max_overhang:
        log.error(file, f"{group}: box ({x:g}, {y:g}, {w:g}x{h:g}) runs off the {width}x{height} page "
                        f"by more than export.max_overhang={max_overhang:g} of the page")
        return None
    if over_x or over_y:
        log.warning(file, f"{group}: box ({x:g}, {y:g}, {w:g}x{h:g}) runs slightly off the "
                          f"{width}x{height} page; clipped")
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    if x1 - x0 < 1 or y1 - y0 < 1:
        log.error(file, f"{group}: box lies entirely outside the page")
        return None
    return x0, y0, x1, y1


def class_of(group: dict, params: ExportParams, file: str, label: str, log: ProblemLog) -> int | None:
    if params.class_field is None:
        return 0
    value = group.get(params.class_field)
    name = params.class_map.get(str(value))
    if name is None or name not in params.class_names:
        log.error(file, f"{label}: {params.class_field}={value!r} has no class in export.class_map/class_names")
        return None
    return params.class_names.index(name)


def page_rows(
    groups: list, width: int, height: int, params: ExportParams, rel: str, log: ProblemLog
) -> list[LabelRow]:
    """The YOLO rows of one page's groups; problems go to ``log``."""
    rows: list[LabelRow] = []
    seen: dict[tuple, int] = {}
    for index, group in enumerate(groups):
        label = f"group {index}"
        if not isinstance(group, dict):
            log.error(rel, f"{label}: not an object")
            continue
        if "combinedBbox" not in group:
            log.error(rel, f"{label}: no combinedBbox")
            continue
        corners = convert_box(group["combinedBbox"], width, height, params.max_overhang, rel, label, log)
        cls = class_of(group, params, rel, label, log)
        if corners is None or cls is None:
            continue
        x0, y0, x1, y1 = corners
        identity = (cls, round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1))
        if identity in seen:
            message = f"{label}: duplicates group {seen[identity]}"
            if params.duplicate_boxes == "error":
                log.error(rel, message)
            else:
                log.warning(rel, message + "; kept once")
            continue
        seen[identity] = index
        rows.append(LabelRow(cls, (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height))
    return rows



def convert_page(source: PageSource, dataset_root: Path, params: ExportParams
                 ) -> tuple[PageRecord | None, list[Problem]]:
    """One page -> its manifest record (None on errors) and its problems. Runs in worker processes."""
    log = ProblemLog()
    if source.image is None:
        log.error(source.groups, f"no page image pages/{source.page}.png (or .jpg) beside this groups file")
        return None, log.problems
    header = read_page_header(dataset_root / source.image, source.image, log)
    groups = read_groups(dataset_root / source.groups, source.groups, log)
    rows = page_rows(groups, header.width, header.height, params, source.groups, log) \
        if header and groups is not None else []
    if log.errors:
        return None, log.problems
    assert header is not None and source.image is not None
    record = PageRecord(
        source.key, source.document, source.page, source.image, header.width, header.height, source.groups_stat,
        source.image_stat, "".join(row.format() + "\n" for row in rows), len(rows), [asdict(p) for p in log.warnings],
        header.flat,
    )
    return record, log.problems


def params_fingerprint(params: ExportParams) -> str:
    return hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode()).hexdigest()[:16]


def load_previous(out_dir: Path, fingerprint: str) -> tuple[dict[str, PageRecord], dict]:
    """The page records and summary of the last export, if it was made with the same parameters (else
    nothing to reuse)."""
    try:
        manifest = read_manifest(out_dir, with_stats=True)
    except UserError:  # none yet, or unreadable: everything is exported again
        return {}, {}
    if manifest.summary.get("params") != fingerprint:
        return {}, {}
    return {p.key: p for p in manifest.pages}, manifest.summary


def collect_pages(
    dataset_root: Path, params: ExportParams, previous: dict[str, PageRecord], log: ProblemLog
) -> tuple[list[PageRecord], int, int]:
    """The records of every labeled page: reused when neither of its files changed, else converted.
    Also the count of pages with no groups file, and of pages converted."""
    sources, unlabeled = scan_documents(dataset_root)
    for link in outside_links(dataset_root):
        log.error(link.split(" -> ")[0], f"a link leading outside {dataset_root} ({link.split(' -> ')[1]}): "
                  f"copy the file into the app's folder instead")
    name_problems(sources, log)
    records: dict[str, PageRecord] = {}
    todo: list[PageSource] = []
    for source in sources:
        cached = previous.get(source.key)
        if cached and cached.groups_stat == source.groups_stat and cached.image_stat == source.image_stat \
                and cached.image == source.image:
            records[source.key] = cached
            log.problems.extend(Problem(**p) for p in cached.problems)
        else:
            todo.append(source)
    for record, problems in map_pages(partial(convert_page, dataset_root=dataset_root, params=params), todo, "export"):
        log.problems.extend(problems)
        if record:
            records[record.key] = record
    return [records[s.key] for s in sources if s.key in records], unlabeled, len(todo)


def _link_image(source: Path, target: Path, flat: bool) -> None:
    """The page image in the export: a hard link to the app's file (no second copy on disk), or a copy
    where no link can be made (another drive, a file system without links). Always a new file, then a
    rename: the old one may be a link, and writing into it would change the page it shares bytes with.

    A page with a transparent background or 16-bit greys is written as a flattened 8-bit copy instead
    (data/page_image.py): training would read it as black, or blank."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    if flat:  # known from the header export read (the record's `flat`): no second open of every page
        with Image.open(source) as image:
            as_page(ImageOps.exif_transpose(image)).save(tmp, format=image.format or "PNG")  # upright, as the boxes
        files.replace(tmp, target)
        return
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    files.replace(tmp, target)


def _write_label(text: str, target: Path) -> None:
    target.write_bytes(text.encode("utf-8"))


def write_export(pages: list[PageRecord], previous: dict[str, PageRecord], dataset_root: Path, out_dir: Path,
                 summary: dict, unchanged: bool = False) -> int:
    """Bring out_dir up to date file by file; return how many files were (re)written.

    manifest.json is written last (atomically), and a page's files are only trusted while the
    manifest's record of its sources matches them. So a run interrupted halfway leaves pages whose
    sources differ from the old manifest, and the next run rewrites exactly those: no half-written
    file survives, without paying for a temporary file and a rename per page.
    """
    images_dir, labels_dir = out_dir / "images", out_dir / "labels"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    listed = {folder: [e.name for e in os.scandir(folder)] for folder in (images_dir, labels_dir)}
    present = {name for names in listed.values() for name in names}
    wanted: set[str] = set()
    jobs: list[tuple] = []
    for page in pages:
        image_name, label_name = page.image_name, page.label_name
        wanted.add(image_name)
        wanted.add(label_name)
        before = previous.get(page.key)
        if image_name not in present or before is None or before.image_stat != page.image_stat:
            jobs.append((_link_image, dataset_root / page.image, images_dir / image_name, page.flat))
        if label_name not in present or before is None or before.labels != page.labels:
            jobs.append((_write_label, page.labels, labels_dir / label_name))
    for write, *args in track(jobs, "export: write"):  # threads measured slower here: the disk is the limit
        write(*args)
    stale = [folder / name for folder, names in listed.items() for name in names if name not in wanted]
    for path in stale:
        files.remove(path)
    if not (unchanged and not jobs and not stale):  # ``unchanged``: the same pages and records as the manifest
        write_manifest(out_dir, Manifest(summary, pages))
    return len(jobs)


def run(dataset_root: Path, out_dir: Path, params: ExportParams, report_file: Path, console: Console) -> dict:
    """Export every labeled page; raise StageFailed (after reporting) on errors, touching nothing."""
    log = ProblemLog()
    fingerprint = params_fingerprint(params)
    previous, previous_summary = load_previous(out_dir, fingerprint)
    pages, unlabeled, converted = collect_pages(dataset_root, params, previous, log)
    summary = {
        "documents": len({p.document for p in pages}),
        "pages": len(pages),
        "boxes": sum(p.boxes for p in pages),
        "negative_pages": sum(1 for p in pages if not p.boxes),
        "unlabeled_pages": unlabeled,
        "class_names": list(params.class_names),
        "errors": len(log.errors),
        "warnings": len(log.warnings),
        "params": fingerprint,
    }
    write_json(report_file, {"summary": summary, "problems": log.as_json()})
    log.report(console, "export")
    unchanged = converted == 0 and len(pages) == len(previous) and summary == previous_summary
    written = write_export(pages, previous, dataset_root, out_dir, summary, unchanged)
    console.print(
        f"export: {summary['pages']} pages from {summary['documents']} documents, {summary['boxes']} boxes, "
        f"{summary['negative_pages']} negative pages, {unlabeled} pages not labeled yet -> {out_dir} "
        f"({written} files written, the rest unchanged)"
    )
    return summary


def main(params: Params, console: Console) -> None:
    paths = params.paths
    run(Path(paths.dataset_root), Path(paths.export_dir), params.export,
        Path(paths.reports_dir) / "export.json", console)

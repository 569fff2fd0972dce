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
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError
from rich.console import Console

from qblock.config import ExportParams, Params
from qblock.errors import UserError
from qblock.labels import LabelRow, page_key
from qblock.problems import Problem, ProblemLog, write_json
from qblock.progress import map_pages, track

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GROUPS_SUFFIX = "_groups.json"
_ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_PLAIN = (int, float)  # not bool, not str


def read_image_size(path: Path, rel: str, log: ProblemLog) -> tuple[int, int] | None:
    """The image's displayed size (EXIF rotation applied), or None if it cannot be read."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            # A PNG's getexif() decodes the whole image looking for a late eXIf chunk; the header's
            # chunks are enough (and JPEG keeps EXIF in its header anyway).
            exif = image.getexif() if image.format != "PNG" else Image.Exif()
            if image.format == "PNG" and "exif" in image.info:
                exif.load(image.info["exif"])
            orientation = exif.get(0x0112, 1)
    except (UnidentifiedImageError, OSError) as exc:
        log.error(rel, f"cannot read the page image: {exc}")
        return None
    if orientation in _ROTATING_ORIENTATIONS:
        log.warning(rel, f"EXIF orientation {orientation} rotates the image; boxes are read in the rotated frame")
        return height, width
    return width, height


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def convert_box(
    bbox: object, width: int, height: int, max_overhang: float, file: str, group: str, log: ProblemLog
) -> tuple[float, float, float, float] | None:
    """A combinedBbox -> clipped pixel corners, or None (with an error logged)."""
    if type(bbox) is dict:  # the fast path: four plain numbers, a box inside the page
        x, y, w, h = bbox.get("x"), bbox.get("y"), bbox.get("width"), bbox.get("height")
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
    x, y, w, h = (values[k] for k in ("x", "y", "width", "height"))
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


def read_groups(path: Path, rel: str, log: ProblemLog) -> list | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        log.error(rel, "not UTF-8 text")
        return None
    except json.JSONDecodeError as exc:
        log.error(rel, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        return None
    if not isinstance(data, dict) or "groups" not in data:
        log.error(rel, "no `groups` list at the top level")
        return None
    if not isinstance(data["groups"], list):
        log.error(rel, f"`groups` is a {type(data['groups']).__name__}, not a list")
        return None
    return data["groups"]


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



class PageSource(NamedTuple):
    """One labeled page in the app's dataset: its groups file and page image (relative paths)."""

    key: str
    document: str
    page: str
    groups: str
    image: str | None
    groups_stat: list[int]  # [size, mtime_ns]
    image_stat: list[int] | None


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stat(entry: os.DirEntry) -> list[int]:
    stat = entry.stat()
    return [stat.st_size, stat.st_mtime_ns]


def check_pages_present(root: Path, dataset_root: Path) -> None:
    """Stop before the pipeline starts when the labeled pages are not on this machine (or in this copy).

    DVC alone would fail at the export stage with a bare "No such file or directory"; this says
    why the folder is missing and what brings it.
    """
    if (dataset_root / "documents").is_dir():
        return
    folder = dataset_root.relative_to(root).as_posix() if dataset_root.is_relative_to(root) else str(dataset_root)
    tracked = f"{folder}.dvc"
    queued = os.environ.get("DVC_ROOT") and Path(os.environ["DVC_ROOT"]).resolve() != root.resolve()
    if (root / tracked).is_file():
        how = f"DVC tracks it ({tracked}) but it is not checked out here: run `dvc pull {tracked}`."
    elif queued:
        how = ("This is a queued experiment: it runs in a temporary copy of the repository that holds only "
               "what git and DVC track. Track the pages, commit, and queue again:\n"
               f"  dvc add {folder}\n  git add {tracked}\n"
               "  git commit -m 'Track the labeled pages'")
    else:
        how = ("Point paths.dataset_root (conf/config.yaml) at the app's dataset_root, mirror it here with "
               f"`qblock publish --app PATH`, or write demo pages: `qblock demo-data {folder}`.")
    raise UserError(f"{folder}: no labeled pages here (no documents/ folder). {how}")


def scan_documents(dataset_root: Path) -> tuple[list[PageSource], int]:
    """Every groups file with its page image; also the count of page images with no groups file.

    One directory listing per folder (``os.scandir``; on Windows it carries the file times, so no
    file is opened or stat'ed twice), which keeps a re-run over 10,000 unchanged pages fast.
    """
    check_pages_present(Path.cwd(), dataset_root)
    documents_dir = dataset_root / "documents"
    sources: list[PageSource] = []
    unlabeled = 0
    for document in sorted((e for e in os.scandir(documents_dir) if e.is_dir()), key=lambda e: e.name):
        images: dict[str, os.DirEntry] = {}
        entries = _entries(documents_dir / document.name / "pages")
        for suffix in reversed(IMAGE_SUFFIXES):  # the earlier suffix wins: page_001.png over page_001.jpg
            images |= {e.name[: -len(suffix)]: e for e in entries if e.name.endswith(suffix)}
        labeled = set()
        for entry in sorted(_entries(documents_dir / document.name / "groups"), key=lambda e: e.name):
            if not entry.name.endswith(GROUPS_SUFFIX):
                continue
            page = entry.name[: -len(GROUPS_SUFFIX)]
            labeled.add(page)
            image = images.get(page)
            sources.append(PageSource(
                page_key(document.name, page), document.name, page,
                f"documents/{document.name}/groups/{entry.name}",
                f"documents/{document.name}/pages/{image.name}" if image else None,
                _stat(entry), _stat(image) if image else None,
            ))
        unlabeled += len(images.keys() - labeled)
    return sources, unlabeled


def convert_page(source: PageSource, dataset_root: Path, params: ExportParams) -> tuple[dict | None, list[Problem]]:
    """One page -> its manifest record (None on errors) and its problems. Runs in worker processes."""
    log = ProblemLog()
    if source.image is None:
        log.error(source.groups, f"no page image pages/{source.page}.png (or .jpg) beside this groups file")
        return None, log.problems
    size = read_image_size(dataset_root / source.image, source.image, log)
    groups = read_groups(dataset_root / source.groups, source.groups, log)
    rows = page_rows(groups, *size, params, source.groups, log) if size and groups is not None else []
    if log.errors:
        return None, log.problems
    record = {
        "key": source.key, "document": source.document, "page": source.page, "image": source.image,
        "width": size[0], "height": size[1], "groups_stat": source.groups_stat, "image_stat": source.image_stat,
        "labels": "".join(row.format() + "\n" for row in rows), "boxes": len(rows),
        "problems": [asdict(p) for p in log.warnings],
    }
    return record, log.problems


def params_fingerprint(params: ExportParams) -> str:
    return hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode()).hexdigest()[:16]


def load_previous(out_dir: Path, fingerprint: str) -> dict[str, dict]:
    """The page records of the last export, if it was made with the same parameters (else nothing to reuse)."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        if manifest["summary"].get("params") != fingerprint:
            return {}
        return {p["key"]: p for p in manifest["pages"] if "labels" in p}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def collect_pages(
    dataset_root: Path, params: ExportParams, previous: dict[str, dict], log: ProblemLog
) -> tuple[list[dict], int]:
    """The records of every labeled page: reused when neither of its files changed, else converted."""
    sources, unlabeled = scan_documents(dataset_root)
    records: dict[str, dict] = {}
    todo: list[PageSource] = []
    for source in sources:
        cached = previous.get(source.key)
        if cached and cached["groups_stat"] == source.groups_stat and cached["image_stat"] == source.image_stat \
                and cached["image"] == source.image:
            records[source.key] = cached
            log.problems.extend(Problem(**p) for p in cached["problems"])
        else:
            todo.append(source)
    for record, problems in map_pages(partial(convert_page, dataset_root=dataset_root, params=params), todo, "export"):
        log.problems.extend(problems)
        if record:
            records[record["key"]] = record
    return [records[s.key] for s in sources if s.key in records], unlabeled


def _copy_image(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def _write_label(text: str, target: Path) -> None:
    target.write_bytes(text.encode("utf-8"))


def write_export(pages: list[dict], previous: dict[str, dict], dataset_root: Path, out_dir: Path,
                 summary: dict) -> int:
    """Bring out_dir up to date file by file; return how many files were (re)written.

    manifest.json is written last (atomically), and a page's files are only trusted while the
    manifest's record of its sources matches them. So a run interrupted halfway leaves pages whose
    sources differ from the old manifest, and the next run rewrites exactly those: no half-written
    file survives, without paying for a temporary file and a rename per page.
    """
    images_dir, labels_dir = out_dir / "images", out_dir / "labels"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    present = {e.name for e in os.scandir(images_dir)} | {e.name for e in os.scandir(labels_dir)}
    wanted: set[str] = set()
    jobs: list[tuple] = []
    for page in pages:
        image_name, label_name = page["key"] + Path(page["image"]).suffix.lower(), page["key"] + ".txt"
        wanted |= {image_name, label_name}
        before = previous.get(page["key"])
        if image_name not in present or before is None or before["image_stat"] != page["image_stat"]:
            jobs.append((_copy_image, dataset_root / page["image"], images_dir / image_name))
        if label_name not in present or before is None or before["labels"] != page["labels"]:
            jobs.append((_write_label, page["labels"], labels_dir / label_name))
    for write, *args in track(jobs, "export: write"):  # threads measured slower here: the disk is the limit
        write(*args)
    for folder in (images_dir, labels_dir):
        for stale in os.scandir(folder):
            if stale.name not in wanted:
                os.unlink(stale.path)
    write_json(out_dir / "manifest.json", {"summary": summary, "pages": pages}, compact=True)
    return len(jobs)


def run(dataset_root: Path, out_dir: Path, params: ExportParams, report_file: Path, console: Console) -> dict:
    """Export every labeled page; raise StageFailed (after reporting) on errors, touching nothing."""
    log = ProblemLog()
    fingerprint = params_fingerprint(params)
    previous = load_previous(out_dir, fingerprint)
    pages, unlabeled = collect_pages(dataset_root, params, previous, log)
    summary = {
        "documents": len({p["document"] for p in pages}),
        "pages": len(pages),
        "boxes": sum(p["boxes"] for p in pages),
        "negative_pages": sum(1 for p in pages if not p["boxes"]),
        "unlabeled_pages": unlabeled,
        "class_names": list(params.class_names),
        "errors": len(log.errors),
        "warnings": len(log.warnings),
        "params": fingerprint,
    }
    write_json(report_file, {"summary": summary, "problems": log.as_json()})
    log.report(console, "export")
    written = write_export(pages, previous, dataset_root, out_dir, summary)
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

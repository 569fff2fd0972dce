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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from rich.console import Console

from qblock.config import ExportParams, Params
from qblock.errors import UserError
from qblock.labels import LabelRow, page_key
from qblock.problems import Problem, ProblemLog, write_json
from qblock.progress import track

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GROUPS_SUFFIX = "_groups.json"
_ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass
class ExportedPage:
    key: str
    document: str
    page: str
    image: str  # relative to the dataset root
    width: int
    height: int
    rows: list[LabelRow]
    groups_stat: list[int]  # [size, mtime_ns] of the groups file when it was read
    image_stat: list[int]  # the same for the page image
    problems: list[Problem] = field(default_factory=list)  # this page's warnings

    def to_json(self) -> dict:
        data = {k: getattr(self, k) for k in ("key", "document", "page", "image", "width", "height",
                                              "groups_stat", "image_stat")}
        data["rows"] = [[r.cls, r.x, r.y, r.w, r.h] for r in self.rows]
        data["problems"] = [asdict(p) for p in self.problems]
        return data

    @classmethod
    def from_json(cls, data: dict) -> ExportedPage:
        rows = [LabelRow(int(r[0]), *map(float, r[1:])) for r in data["rows"]]
        problems = [Problem(**p) for p in data["problems"]]
        return cls(**(data | {"rows": rows, "problems": problems}))


def find_page_image(pages_dir: Path, page: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = pages_dir / f"{page}{suffix}"
        if candidate.is_file():
            return candidate
    return None


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
        identity = (cls, *(round(c, 1) for c in corners))
        if identity in seen:
            message = f"{label}: duplicates group {seen[identity]}"
            if params.duplicate_boxes == "error":
                log.error(rel, message)
            else:
                log.warning(rel, message + "; kept once")
            continue
        seen[identity] = index
        x0, y0, x1, y1 = corners
        rows.append(LabelRow(cls, (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height))
    return rows


def file_stat(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def params_fingerprint(params: ExportParams) -> str:
    return hashlib.sha256(json.dumps(asdict(params), sort_keys=True).encode()).hexdigest()[:16]


def load_previous(out_dir: Path, fingerprint: str) -> dict[str, ExportedPage]:
    """The pages of the last export, if it was made with the same parameters (else nothing to reuse)."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        if manifest["summary"].get("params") != fingerprint:
            return {}
        return {p["key"]: ExportedPage.from_json(p) for p in manifest["pages"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def export_page(
    groups_file: Path, dataset_root: Path, params: ExportParams, previous: dict[str, ExportedPage], log: ProblemLog
) -> ExportedPage | None:
    """One page's labels: reused from the last export when neither of its files changed."""
    doc_dir = groups_file.parent.parent
    page = groups_file.name[: -len(GROUPS_SUFFIX)]
    rel = groups_file.relative_to(dataset_root).as_posix()
    image = find_page_image(doc_dir / "pages", page)
    if image is None:
        log.error(rel, f"no page image pages/{page}.png (or .jpg) beside this groups file")
        return None
    key = page_key(doc_dir.name, page)
    groups_stat, image_stat = file_stat(groups_file), file_stat(image)
    cached = previous.get(key)
    if cached and cached.groups_stat == groups_stat and cached.image_stat == image_stat:
        log.problems.extend(cached.problems)
        return cached
    page_log = ProblemLog()
    size = read_image_size(image, image.relative_to(dataset_root).as_posix(), page_log)
    groups = read_groups(groups_file, rel, page_log)
    rows = page_rows(groups, *size, params, rel, page_log) if size and groups is not None else []
    log.problems.extend(page_log.problems)
    if page_log.errors:
        return None
    return ExportedPage(key, doc_dir.name, page, image.relative_to(dataset_root).as_posix(), *size, rows,
                        groups_stat, image_stat, page_log.warnings)


def collect_pages(
    dataset_root: Path, params: ExportParams, previous: dict[str, ExportedPage], log: ProblemLog
) -> tuple[list[ExportedPage], int]:
    """Every labeled page under ``dataset_root``; also the count of pages not labeled yet."""
    documents_dir = dataset_root / "documents"
    if not documents_dir.is_dir():
        raise UserError(
            f"{dataset_root}: no documents/ folder. Point paths.dataset_root at the app's dataset_root, "
            f"or make demo data with `qblock demo-data {dataset_root}`."
        )
    groups_files = [Path(p) for p in sorted(map(str, documents_dir.glob(f"*/groups/*{GROUPS_SUFFIX}")))]
    pages = [p for f in track(groups_files, "export") if (p := export_page(f, dataset_root, params, previous, log))]
    labeled = {(f.parent.parent.name, f.name[: -len(GROUPS_SUFFIX)]) for f in groups_files}
    images = {(p.parent.parent.name, p.stem) for s in IMAGE_SUFFIXES for p in documents_dir.glob(f"*/pages/*{s}")}
    return pages, len(images - labeled)


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


def write_export(pages: list[ExportedPage], previous: dict[str, ExportedPage], dataset_root: Path,
                 out_dir: Path, summary: dict) -> int:
    """Bring out_dir up to date file by file; return how many files were (re)written.

    Each file is replaced atomically and manifest.json is written last, so an interrupted run
    leaves files that match either the old or the new manifest, never half a file.
    """
    images_dir, labels_dir = out_dir / "images", out_dir / "labels"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    present = {p.name for p in images_dir.iterdir()} | {p.name for p in labels_dir.iterdir()}
    wanted: set[str] = set()
    written = 0
    for page in pages:
        source = dataset_root / page.image
        image_name, label_name = f"{page.key}{source.suffix.lower()}", f"{page.key}.txt"
        wanted |= {image_name, label_name}
        before = previous.get(page.key)
        if image_name not in present or before is None or before.image_stat != page.image_stat:
            _write_atomic(images_dir / image_name, source.read_bytes())
            written += 1
        if label_name not in present or before is None or before.rows != page.rows:
            _write_atomic(labels_dir / label_name, "".join(r.format() + "\n" for r in page.rows).encode("utf-8"))
            written += 1
    for folder in (images_dir, labels_dir):
        for stale in folder.iterdir():
            if stale.name not in wanted:
                stale.unlink()
    write_json(out_dir / "manifest.json", {"summary": summary, "pages": [p.to_json() for p in pages]}, compact=True)
    return written


def run(dataset_root: Path, out_dir: Path, params: ExportParams, report_file: Path, console: Console) -> dict:
    """Export every labeled page; raise StageFailed (after reporting) on errors, touching nothing."""
    log = ProblemLog()
    fingerprint = params_fingerprint(params)
    previous = load_previous(out_dir, fingerprint)
    pages, unlabeled = collect_pages(dataset_root, params, previous, log)
    summary = {
        "documents": len({p.document for p in pages}),
        "pages": len(pages),
        "boxes": sum(len(p.rows) for p in pages),
        "negative_pages": sum(1 for p in pages if not p.rows),
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

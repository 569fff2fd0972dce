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
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, cast

from PIL import Image, ImageOps
from rich.console import Console

from qblock.config.schema import ExportParams, Params
from qblock.core import collector, files
from qblock.core.code_closure import code_digest
from qblock.core.errors import UserError
from qblock.core.progress import map_pages, track
from qblock.data.app_dataset import (
    PageSource,
    document_sources,
    folded_together,
    list_document,
    list_documents,
    name_problems,
    outside_links,
    read_groups,
    read_page_header,
)
from qblock.data.labels import LabelRow
from qblock.data.page_image import as_page
from qblock.data.problems import Problem, ProblemLog, write_json
from qblock.data.yolo_folder import (
    DocumentRecord,
    Manifest,
    PageRecord,
    file_names,
    kept_problems,
    page_files,
    read_fingerprints,
    read_manifest,
    write_manifest,
)

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
    if str(value) in params.class_map and params.class_map[str(value)] is None:
        return None  # a class this project drops (export.class_map: VALUE: null): not a question block
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
    labels = read_groups(dataset_root / source.groups, source.groups, log)
    rows = page_rows(labels.groups, header.width, header.height, params, source.groups, log) \
        if header and labels is not None else []
    if log.errors:
        return None, log.problems
    assert header is not None and source.image is not None and labels is not None
    record = PageRecord(
        source.key, source.document, source.page, source.image, header.width, header.height, source.groups_stat,
        source.image_stat, "".join(row.format() + "\n" for row in rows), len(rows), [asdict(p) for p in log.warnings],
        header.flat, labels.split,
    )
    return record, log.problems


def params_fingerprint(params: ExportParams) -> str:
    """What the exported files depend on beside the app's files: the params and the code that wrote them
    (another of either exports every page again)."""
    keyed = json.dumps(asdict(params), sort_keys=True) + code_digest("qblock.stages.export")
    return hashlib.sha256(keyed.encode()).hexdigest()[:16]


def load_previous(out_dir: Path, fingerprint: str) -> tuple[Manifest | None, dict[str, str]]:
    """The last export's manifest and this machine's fingerprints of its documents, if it was made with the
    same parameters (else nothing to reuse). Page stats are read later, for the documents that changed."""
    try:
        manifest = read_manifest(out_dir)
    except UserError:  # none yet, or unreadable: everything is exported again
        return None, {}
    if manifest.summary.get("params") != fingerprint:
        return None, {}
    return manifest, read_fingerprints(out_dir)


class Collected(NamedTuple):
    documents: dict[str, dict[str, Any]]  # as the manifest holds them
    fingerprints: dict[str, str]
    looked_at: dict[str, DocumentRecord]  # documents whose files changed: their pages were looked at again
    removed: list[str]  # documents exported last time that are gone
    file_names: dict[str, list[tuple[str, str]]]  # (image name, label name) of each page, by document
    images_in_place: set[str]  # keys of pages converted again whose exported image is still right


def collect_pages(dataset_root: Path, params: ExportParams, previous: Manifest | None,
                  fingerprints: dict[str, str], out_dir: Path, present: set[str], log: ProblemLog) -> Collected:
    """The records of every labeled page, by document. A document whose files are as they were (the same
    names, sizes and times: its fingerprint) and whose exported files are all ``present`` is carried over
    whole, as the manifest holds it; in one that changed, a page is converted again when one of its files
    changed or is missing."""
    old = previous.documents if previous else {}
    names = list_documents(dataset_root)
    links = outside_links(dataset_root, documents=False)
    folds_together = folded_together(names)  # checked again with their files, so the clash is named by file
    documents: dict[str, dict[str, Any]] = {}
    fresh: dict[str, str] = {}
    changed: list[str] = []
    new_sources: list[PageSource] = []
    unlabeled: dict[str, int] = {}
    exported: dict[str, list[tuple[str, str]]] = {}
    resolved_root = dataset_root.resolve()
    for name in track(names, "export: list"):
        files = list_document(dataset_root, name, resolved_root)
        fresh[name] = files.fingerprint
        links += files.outside_links
        if name in old and fingerprints.get(name) == files.fingerprint and name not in folds_together \
                and present.issuperset(chain.from_iterable(exported.setdefault(name, file_names(name, old[name])))):
            documents[name] = old[name]
            log.problems.extend(Problem(**p) for p in kept_problems(old[name]))
            continue
        changed.append(name)
        sources, unlabeled[name] = document_sources(files)
        new_sources += sources
    for link in sorted(links):
        log.error(link.split(" -> ")[0], f"a link leading outside {dataset_root} ({link.split(' -> ')[1]}): "
                  f"copy the file into the app's folder instead")
    name_problems(new_sources, log)
    before: dict[str, dict[str, PageRecord]] = {}
    for name in changed:
        if previous is not None and name in old:
            stats = page_files(out_dir).read(name) if fingerprints else {}
            before[name] = {p.page: p for p in previous.records(name, stats).pages if p.groups_stat}
    carried: dict[str, PageRecord] = {}
    todo: list[PageSource] = []
    images_in_place: set[str] = set()
    for source in new_sources:
        record = before.get(source.document, {}).get(source.page)
        if record is None:
            todo.append(source)
            continue
        same_image = record.image_stat == source.image_stat and record.image == source.image \
            and record.image_name in present
        if same_image and record.groups_stat == source.groups_stat and record.label_name in present:
            carried[source.key] = record
            log.problems.extend(Problem(**p) for p in record.problems)
            continue
        todo.append(source)
        if same_image:
            images_in_place.add(source.key)  # only the groups file changed
    for record, problems in map_pages(partial(convert_page, dataset_root=dataset_root, params=params), todo, "export"):
        log.problems.extend(problems)
        if record:
            carried[record.key] = record
    by_document: dict[str, list[PageRecord]] = {}
    for source in new_sources:
        if source.key in carried:
            by_document.setdefault(source.document, []).append(carried[source.key])
    looked_at = {}
    for name in changed:
        if by_document.get(name) or unlabeled[name]:
            looked_at[name] = DocumentRecord(by_document.get(name, []), unlabeled[name])
            documents[name] = looked_at[name].as_json()
            exported[name] = [(page.image_name, page.label_name) for page in looked_at[name].pages]
    return Collected({name: documents[name] for name in names if name in documents}, fresh, looked_at,
                     sorted(old.keys() - set(names)), {name: exported[name] for name in documents},
                     images_in_place)


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
        if os.path.samestat(os.stat(source), os.stat(target)):
            return  # already a link to this page: renaming a link over its twin would do nothing, and keep the tmp
    except OSError:
        pass
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    files.replace(tmp, target)


def _write_label(text: str, target: Path) -> None:
    target.write_bytes(text.encode("utf-8"))


def listing(out_dir: Path) -> dict[Path, list[str]]:
    """The names in the export's two folders (created if missing): one listing each, no stat."""
    listed = {}
    for folder in (out_dir / "images", out_dir / "labels"):
        folder.mkdir(parents=True, exist_ok=True)
        listed[folder] = os.listdir(folder)
    return listed


def write_export(collected: Collected, listed: dict[Path, list[str]], dataset_root: Path, out_dir: Path) -> int:
    """Bring out_dir up to date file by file; return how many files were (re)written.

    Pages converted again (their records carry label text) are written, their labels only when they differ
    from what is on disk; files of no page are removed. manifest.json is written after this, with this
    machine's stats: a page's files are only trusted while those stats match its sources, so a run
    interrupted halfway leaves pages that the next run redoes. No half-written file survives, without paying
    for a temporary file and a rename per page.
    """
    images_dir, labels_dir = out_dir / "images", out_dir / "labels"
    present = {name for names in listed.values() for name in names}
    wanted = set(chain.from_iterable(chain.from_iterable(collected.file_names.values())))
    jobs: list[tuple] = []
    for document in collected.looked_at.values():
        for page in document.pages:
            if page.labels is None:  # carried over: its files are there (collect_pages saw them), as written
                continue
            if page.key not in collected.images_in_place:
                jobs.append((_link_image, dataset_root / page.image, images_dir / page.image_name, page.flat))
            if page.label_name not in present or _read_label(labels_dir / page.label_name) != page.labels:
                jobs.append((_write_label, page.labels, labels_dir / page.label_name))
    for write, *args in track(jobs, "export: write"):  # threads measured slower here: the disk is the limit
        write(*args)
    stale = [folder / name for folder, names in listed.items() for name in names if name not in wanted]
    for path in stale:
        files.remove(path)
    return len(jobs)


def _read_label(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


@collector.paused()  # bookkeeping over every page: no cycles to find (core/collector.py)
def run(dataset_root: Path, out_dir: Path, params: ExportParams, report_file: Path, console: Console) -> dict:
    """Export every labeled page; raise StageFailed (after reporting) on errors, touching nothing."""
    log = ProblemLog()
    fingerprint = params_fingerprint(params)
    previous, fingerprints = load_previous(out_dir, fingerprint)
    listed = listing(out_dir)
    present = {name for names in listed.values() for name in names}
    collected = collect_pages(dataset_root, params, previous, fingerprints, out_dir, present, log)
    documents = collected.documents
    boxes = list(map(itemgetter(4), chain.from_iterable(document["pages"] for document in documents.values())))
    unlabeled = sum(document["unlabeled"] for document in documents.values())
    summary = {
        "documents": sum(1 for document in documents.values() if document["pages"]),
        "pages": len(boxes),
        "boxes": sum(boxes),
        "negative_pages": boxes.count(0),
        "unlabeled_pages": unlabeled,
        "class_names": list(params.class_names),
        "errors": len(log.errors),
        "warnings": len(log.warnings),
        "params": fingerprint,
    }
    write_json(report_file, {"summary": summary, "problems": log.as_json()})
    log.report(console, "export")
    written = write_export(collected, listed, dataset_root, out_dir)
    if written or collected.looked_at or collected.removed or previous is None or summary != previous.summary \
            or collected.fingerprints != fingerprints:
        # a document carried over kept its fingerprint, so its page stats are those on disk already
        write_manifest(out_dir, Manifest(summary, documents), collected.fingerprints, collected.looked_at,
                       collected.removed)
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

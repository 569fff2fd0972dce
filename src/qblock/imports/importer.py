"""One import, start to end: read the whole export, check it, compare it with the app's folder, and
only then write (or, with ``dry_run``, say what would be written)."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from qblock.config.schema import ExportParams
from qblock.core.errors import UserError
from qblock.core.machine import project_root
from qblock.data.app_folder import AppFolder
from qblock.imports import digests, formats, pages

DRY_RUN_SHOWN = 10  # pages a dry run names one by one, of each kind of change
# The versions of one export: Roboflow's `workbooks.v3i.yolov8(.zip)`, Label Studio's `project-3-at-2026-11-02-...`
_ROBOFLOW_VERSION = re.compile(r"^(?P<name>.+?)\.v\d+i?(?:\.[A-Za-z0-9]+)*$")
_LABEL_STUDIO_VERSION = re.compile(r"^(?P<name>project-\d+)-at-\d{4}-\d{2}-\d{2}.*$")


def export_family(path: Path) -> str:
    """The export's name without its version and format (the same for v2 and v3 of one project), for the
    document of pages whose names show no workbook: a new version then updates those pages."""
    name = path.name
    for suffix in (".zip", ".json"):
        name = name.removesuffix(suffix)
    for pattern in (_ROBOFLOW_VERSION, _LABEL_STUDIO_VERSION):
        if match := pattern.match(name):
            return match["name"]
    return name


def run_import(kind: str, path: Path, images: Path | None, dataset_root: Path, params: ExportParams,
               into: str | None, dry_run: bool, replace: bool, console: Console, *,
               allow_empty: bool = False, per_page: bool = False, keep_split: bool = False) -> pages.Plan:
    with formats.read(kind, path, images) as (found, notes), digests.kept(found, project_root() / digests.CACHE):
        return _import(kind, path, found, notes + kept_sides(path, found, keep_split), dataset_root, params, into,
                       dry_run, replace, console, allow_empty, per_page)


def kept_sides(path: Path, found: list[pages.ImportedPage], keep_split: bool) -> list[str]:
    """With ``keep_split``, a note of how many pages keep each side of the export's own split; else the
    pages forget it (qblock's split by document decides)."""
    if not keep_split:
        for page in found:
            page.split = ""
        return []
    counts = {side: sum(1 for p in found if p.split == side) for side in ("train", "val", "test")}
    if not any(counts.values()):
        raise UserError(f"{path}: --keep-split, but this export has no train/valid/test of its own to keep (its "
                        "pages are in no split folder). Nothing was written; import it without --keep-split")
    unsplit = sum(1 for p in found if not p.split)
    return ["keeping the export's own split: " + ", ".join(f"{side} {n}" for side, n in counts.items() if n)
            + (f" ({unsplit} page(s) in no split folder go by document)" if unsplit else "")
            + ". Pages of one document may then be on more than one side: figures compare with the export's "
            "own published ones, not what a new workbook gets"]


def _import(kind: str, path: Path, found: list[pages.ImportedPage], notes: list[str], dataset_root: Path,
            params: ExportParams, into: str | None, dry_run: bool, replace: bool, console: Console,
            allow_empty: bool = False, per_page: bool = False) -> pages.Plan:
    fallback = export_family(path)
    if not found:
        raise UserError(f"{path}: no labeled pages in this export")
    if not any(p.boxes for p in found):
        raise UserError(f"{path}: {len(found)} page(s) but not one box in this export: was it exported with its "
                        f"annotations (rectangles, not only the images)? Nothing was written.")
    tool = kind
    notes = notes + pages.identical_images(found)
    if into and per_page:
        raise UserError("--into and --document-per-page say different things: choose one")
    plan = pages.plan(found, dataset_root, tool, path.name, params, into, fallback, per_page)
    documents = sorted({p.document for p in found})
    boxes = sum(len(p.boxes) for p in found)
    console.print(f"import: {len(found)} page(s), {boxes} box(es) from {kind} export {path.name} into "
                  f"{len(documents)} document(s) under {AppFolder(dataset_root).documents}: {', '.join(documents[:8])}"
                  + (" ..." if len(documents) > 8 else ""))
    near = pages.near_identical([*plan.added, *plan.changed, *plan.conflicts])  # new to the app's folder only
    for note in notes + plan.notes + near:
        console.print(f"  {note}")
    console.print(f"  added {len(plan.added)}, changed {len(plan.changed)}, unchanged {len(plan.unchanged)}, "
                  f"removed from the export {len(plan.removed)}"
                  + (f", differing from pages already there {len(plan.conflicts)}" if plan.conflicts else ""))
    if plan.held:
        console.print(f"  {len(plan.held)} page(s) already in the app's folder under another name (the same image "
                      f"bytes), skipped: " + ", ".join(f"{p.source} = {where}" for p, where in plan.held[:5])
                      + (" ..." if len(plan.held) > 5 else ""))
    if plan.removed:
        console.print(f"  no longer in the export (left in place): {', '.join(plan.removed[:10])}")
    if dry_run:
        for label, group in (("add", plan.added), ("change", plan.changed), ("replace", plan.conflicts)):
            for page in group[:DRY_RUN_SHOWN]:  # a few of each, then one line per document: not 2,000 lines
                console.print(f"  would {label} {page.document}/{page.page} ({len(page.boxes)} boxes) "
                              f"from {page.source}")
            if len(group) > DRY_RUN_SHOWN:
                by_document: dict[str, int] = {}
                for page in group[DRY_RUN_SHOWN:]:
                    by_document[page.document] = by_document.get(page.document, 0) + 1
                shown = ", ".join(f"{d} {n}" for d, n in sorted(by_document.items())[:12])
                console.print(f"  would {label} {len(group) - DRY_RUN_SHOWN} more page(s): {shown}"
                              + (" ..." if len(by_document) > 12 else ""))
        console.print("import: dry run, nothing written")
        return plan
    written = pages.apply(plan, dataset_root, tool, path.name, params, replace, allow_empty)
    console.print(f"import: {written} page(s) written" if written else "import: nothing to write; the app's folder "
                  "already has this export")
    return plan

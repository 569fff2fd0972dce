"""What every importer produces, and how it lands in the app's folder.

An importer reads an export into ``ImportedPage``s (an image and its boxes in that image's
pixels, each with the tool's class name); nothing is written until the whole export has been read
and checked. Then ``plan`` names each page's document and page, compares it with what the app's
folder already holds, and ``apply`` writes the new and changed pages in the app's own layout:
``documents/{doc}/pages/{page}.png`` and ``groups/{page}_groups.json`` (pixel ``combinedBbox``),
with an ``imported`` block saying where they came from. A groups file without that block is a
person's (drawn in the app): it is never overwritten unless asked (``replace``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageChops, ImageOps, ImageStat, UnidentifiedImageError

from qblock.config.schema import ExportParams
from qblock.core import files
from qblock.core.errors import UserError
from qblock.data.app_dataset import IMPORTED
from qblock.data.app_folder import AppFolder
from qblock.data.labels import safe_name
from qblock.data.page_image import page_limits, size_problem
from qblock.data.problems import write_json

# Label Studio's upload id before the original name; a file uploaded twice (or through Label Studio, then
# Roboflow) has two
_UPLOAD_PREFIX = re.compile(r"^(?:[0-9a-f]{8}-)+(?=.)")
# a page number at the end, after a separator and an optional page/pg/p marker (algebra_p012, algebra-13,
# algebra page 3), or straight after letters (algebra12); the marker needs the separator before it, so
# vlcsnap-00211 stays vlcsnap and setup_12 setup
_PAGE_NUMBER = re.compile(r"^(?P<doc>.*?)(?:[\s_.-]+(?:page|pg|p)[\s_.-]*|(?<=\D)[\s_.-]*)\d+$", re.IGNORECASE)


@dataclass
class Box:
    x: float  # left, pixels of the imported image
    y: float
    width: float
    height: float
    label: str  # the tool's class name


@dataclass
class ImportedPage:
    source: str  # where it came from, for messages: the export's file (and task)
    image: Path  # the image file that becomes the page
    name: str  # the original page name, without extension
    boxes: list[Box]
    size: tuple[int, int]  # the image's pixels, in which the boxes are
    document: str = ""
    page: str = ""
    missing_labels: bool = False  # the export has no label file for it (its boxes are then none)
    digest: str = ""  # of the image file's bytes: the same page in another export, under any name
    split: str = ""  # train, val or test: where the export put it (kept only with --keep-split), or ""

    def source_digest(self) -> str:
        if not self.digest:
            self.digest = hashlib.sha256(self.image.read_bytes()).hexdigest()
        return self.digest


@dataclass
class Plan:
    added: list[ImportedPage] = field(default_factory=list)
    changed: list[ImportedPage] = field(default_factory=list)
    unchanged: list[ImportedPage] = field(default_factory=list)
    conflicts: list[ImportedPage] = field(default_factory=list)  # a person's file differs
    removed: list[str] = field(default_factory=list)  # doc/page imported before, gone from this export
    emptied: list[ImportedPage] = field(default_factory=list)  # has boxes in the app's folder, none in the export
    held: list[tuple[ImportedPage, str]] = field(default_factory=list)  # already imported as this doc/page
    notes: list[str] = field(default_factory=list)


def as_dict(value: object) -> dict:
    """``value`` if it is a JSON object, else an empty one (exports leave keys out, or null)."""
    return value if isinstance(value, dict) else {}


def original_name(file_name: str) -> str:
    """A page name from an image file name: no folders, no extension, no Label Studio upload id."""
    stem = Path(file_name.replace("\\", "/")).name
    return without_upload_ids(stem.rsplit(".", 1)[0] if "." in stem else stem)


def without_upload_ids(name: str) -> str:
    """``name`` without the Label Studio upload ids before it (``0078ccf0-UPSC_418`` -> ``UPSC_418``)."""
    return _UPLOAD_PREFIX.sub("", name)


def document_of(name: str, fallback: str) -> str:
    """The workbook a page belongs to, from its name: ``algebra_p012`` and ``algebra-13`` -> ``algebra``.

    Pages of one workbook must land in one document (the split is by document); a name with no
    page number is a document of its own, and a bare number belongs to ``fallback``.
    """
    match = _PAGE_NUMBER.match(name)
    if match:
        document = match["doc"].rstrip(" _.-")
        return fallback if document.casefold() in ("", "page", "pg", "p") else document
    return fallback if name.isdigit() else name


def read_image(path: Path, source: str) -> tuple[Image.Image, tuple[int, int]]:
    """The image upright (EXIF orientation applied, as the labeling tools showed it), and its size."""
    try:
        with page_limits(), Image.open(path) as opened:
            if problem := size_problem(opened.size):
                raise UserError(f"{source}: {path}: {problem}")
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{source}: cannot open the image {path}: {exc}") from None
    return image, image.size


ROTATED = (5, 6, 7, 8)  # EXIF orientations that turn the image a quarter: width and height swap
PNG_TAIL = 1 << 20  # bytes read from a PNG's end for an eXIf chunk after its pixels (it sits just before IEND)


def _exif_after_pixels(path: Path) -> bool:
    """Whether a PNG has an eXIf chunk after its pixels, where Pillow sees it only once they are decoded."""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - PNG_TAIL))
        return b"eXIf" in handle.read()


def image_size(path: Path, source: str) -> tuple[int, int]:
    """The size the labeling tools showed (EXIF orientation applied), from the file's header: a 40-megapixel
    scan is not decoded to learn its size (370 ms against about 1). A PNG's EXIF may follow its pixels
    (Pillow sees it there only after decoding them): one whose last megabyte holds an eXIf chunk is decoded,
    as `read_image` does."""
    try:
        with page_limits(), Image.open(path) as opened:
            if problem := size_problem(opened.size):
                raise UserError(f"{source}: {path}: {problem}")
            if opened.format == "PNG" and "exif" not in opened.info and _exif_after_pixels(path):
                return read_image(path, source)[1]
            width, height = opened.size
            if opened.format == "PNG":  # getexif() would decode the pixels looking for a late eXIf chunk
                exif = Image.Exif()
                if "exif" in opened.info:
                    exif.load(opened.info["exif"])
            else:
                exif = opened.getexif()
            orientation = exif.get(0x0112, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{source}: cannot open the image {path}: {exc}") from None
    return (height, width) if orientation in ROTATED else (width, height)


def drop_classes(pages: list[ImportedPage], params: ExportParams) -> list[str]:
    """Take out the boxes of classes ``export.class_map`` maps to null; a note per class dropped."""
    drop = {label for label, target in params.class_map.items() if target is None}
    dropped: dict[str, int] = {}
    for page in pages:
        for box in page.boxes:
            if box.label in drop:
                dropped[box.label] = dropped.get(box.label, 0) + 1
        page.boxes = [box for box in page.boxes if box.label not in drop]
    return [f"dropped {count} box{'es' if count > 1 else ''} of class {label!r} (export.class_map: {label}: null)"
            for label, count in sorted(dropped.items())]


def check_classes(pages: list[ImportedPage], params: ExportParams) -> None:
    """Every class name the export uses must map to one of this project's classes: one error lists
    them all (with where each is first used), so one edit of ``export.class_map`` fixes the import."""
    unknown: dict[str, tuple[int, str]] = {}
    for page in pages:
        for index, box in enumerate(page.boxes, start=1):
            target = params.class_map.get(box.label, box.label if box.label in params.class_names else None)
            mapped = target is not None and target in params.class_names
            if params.class_field is not None and box.label not in params.class_map:
                mapped = False  # the app's class field is written from the map alone
            if not mapped:
                count, where = unknown.get(box.label, (0, f"{page.source}, box {index}"))
                unknown[box.label] = (count + 1, where)
    if not unknown:
        return
    listed = "; ".join(f"{label!r} ({count} box{'es' if count > 1 else ''}, first {where})"
                       for label, (count, where) in sorted(unknown.items()))
    example = ", ".join(f"'{label}': {params.class_names[0]}" for label in sorted(unknown))  # quoted: YAML keys
    raise UserError(f"{len(unknown)} class name(s) in this export are not this project's classes "
                    f"({', '.join(params.class_names)}): {listed}. Map each in conf/config.yaml to a class, or to "
                    f"null to drop its boxes, e.g. export.class_map: {{{example}}}, then `qblock params`. "
                    "Nothing was written.")


def check_boxes(page: ImportedPage, params: ExportParams) -> None:
    width, height = page.size
    slack = params.max_overhang
    for index, box in enumerate(page.boxes, start=1):
        if box.width <= 0 or box.height <= 0:
            raise UserError(f"{page.source}, box {index}: width and height must be positive")
        if box.x < -slack * width or box.y < -slack * height or box.x + box.width > (1 + slack) * width \
                or box.y + box.height > (1 + slack) * height:
            raise UserError(f"{page.source}, box {index}: ({box.x:g}, {box.y:g}, {box.width:g} x {box.height:g}) "
                            f"runs off the {width}x{height} image")


def identical_images(pages: list[ImportedPage]) -> list[str]:
    """A note naming pages whose image files are byte for byte the same (one picture uploaded twice
    under two names): in two documents the split may put them on both sides of train/val. They are
    kept (a blank page may well repeat); the person decides."""
    by_content: dict[str, list[ImportedPage]] = {}
    for page in pages:
        by_content.setdefault(page.source_digest(), []).append(page)  # hashed once a run, for plan too
    same = [f"{', '.join(p.source for p in copies)}" for copies in by_content.values() if len(copies) > 1]
    if not same:
        return []
    return [f"{len(same)} image(s) appear more than once in this export (same bytes, imported as separate pages; "
            f"remove the extra tasks, or import with --into so they share a document): {'; '.join(same[:3])}"
            f"{' ...' if len(same) > 3 else ''}"]


HASH_SIDE = 16  # a 16x16 grey thumbnail, each cell darker than the mean or not: 256 bits
NEAR = 16  # of 256 bits that may differ for two images to be a candidate pair (a resized, re-encoded
# page differs in 5-6; pages of other workbooks in 40 and more, pages of one exam template in about 30)
BANDS = NEAR + 1  # two hashes within NEAR bits share one of NEAR + 1 bands whole: candidates without all pairs
THUMB = (128, 176)  # the size two candidates are compared at, pixel by pixel
SAME = 0.1  # their mean grey difference over their mean ink under which two candidates are one page. Measured:
# a page resized and re-encoded 0.02-0.09; HiLEx's one instruction page in two SAT tests 0.03; two GATE pages
# of one template with other questions 0.11-1.2 (a sparse page's text is a small share of it: a warning, not a gate)


def _thumbnail(path: Path, size: tuple[int, int]) -> Image.Image | None:
    try:
        with page_limits(), Image.open(path) as opened:
            opened.draft("L", (size[0] * 4, size[1] * 4))  # JPEG: decoded at a fraction of its size
            return ImageOps.exif_transpose(opened).convert("L").resize(size, Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError):
        return None


def picture_hash(page: ImportedPage) -> int | None:
    """An average hash of the page's look (256 bits): the same page resized, re-encoded or re-uploaded
    keeps it give or take a few bits. None for a page with no ink to speak of (a blank page may repeat)."""
    small = _thumbnail(page.image, (HASH_SIDE, HASH_SIDE))
    if small is None:
        return None
    pixels = small.tobytes()
    if max(pixels) - min(pixels) < 16:
        return None
    mean = sum(pixels) / len(pixels)
    return int("".join("1" if value < mean else "0" for value in pixels), 2)


def _candidates(hashes: list[int]) -> set[tuple[int, int]]:
    """Index pairs whose hashes differ in NEAR bits or fewer, found through the bands they share."""
    band = HASH_SIDE * HASH_SIDE // BANDS
    buckets: dict[tuple[int, int], list[int]] = {}
    for index, h in enumerate(hashes):
        for number in range(BANDS):
            buckets.setdefault((number, h >> (number * band) & ((1 << band) - 1)), []).append(index)
    return {(first, second) for members in buckets.values() for i, first in enumerate(members)
            for second in members[i + 1:] if (hashes[first] ^ hashes[second]).bit_count() <= NEAR}


def near_identical(pages: list[ImportedPage], shown: int = 3) -> list[str]:
    """A note naming pages of different documents (or of different kept splits) that are one picture though
    their bytes differ: a page uploaded twice, resized or re-encoded. Split by document, they would sit on
    both sides of train/val and flatter val; validate sees identical bytes only. A hash finds candidates,
    a pixel comparison of small greys decides."""
    from qblock.core.progress import track

    hashed = [(page, h) for page in track(pages, "import: comparing pages") if (h := picture_hash(page)) is not None]
    thumbnails: dict[int, Image.Image | None] = {}

    def same(first: int, second: int) -> bool:
        for index in (first, second):
            if index not in thumbnails:
                thumbnails[index] = _thumbnail(hashed[index][0].image, THUMB)
        a, b = thumbnails[first], thumbnails[second]
        if a is None or b is None:
            return False
        ink = (ImageStat.Stat(ImageOps.invert(a)).mean[0] + ImageStat.Stat(ImageOps.invert(b)).mean[0]) / 2
        return ImageStat.Stat(ImageChops.difference(a, b)).mean[0] <= SAME * max(ink, 1.0)

    def apart(a: ImportedPage, b: ImportedPage) -> bool:  # identical bytes: identical_images says so
        return (a.document != b.document or bool(a.split and b.split and a.split != b.split)) \
            and a.source_digest() != b.source_digest()

    pairs = sorted((i, j) for i, j in _candidates([h for _, h in hashed])
                   if apart(hashed[i][0], hashed[j][0]) and same(i, j))
    if not pairs:
        return []
    listed = "; ".join(f"{hashed[i][0].source} ~ {hashed[j][0].source}" for i, j in pairs[:shown])
    return [f"{len(pairs)} pair(s) of pages in different documents look like one page though their files differ "
            f"(uploaded twice, resized or re-encoded?): split by document they can land on both sides of train/val "
            f"and flatter val. Look at them; remove one of each, or import with --into so they share a document: "
            f"{listed}{' ...' if len(pairs) > shown else ''}"]


def groups_document(page: ImportedPage, tool: str, export: str, params: ExportParams) -> dict:
    """The app's groups JSON for one imported page."""
    groups = []
    for index, box in enumerate(page.boxes):
        group = {"id": f"{page.page}-g{index}", "type": box.label,
                 "combinedBbox": {"x": round(box.x, 2), "y": round(box.y, 2), "width": round(box.width, 2),
                                  "height": round(box.height, 2)}}
        if params.class_field:
            group[params.class_field] = box.label
        groups.append(group)
    return {"page": page.page, "imageWidth": page.size[0], "imageHeight": page.size[1], "groups": groups,
            IMPORTED: {"from": tool, "export": export, "file": page.source, "sha256": page.source_digest(),
                       **({"split": page.split} if page.split else {})}}


def _png_bytes(path: Path, source: str) -> bytes:
    image, _ = read_image(path, source)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _same_boxes(a: dict, b: dict) -> bool:
    def boxes(data: dict) -> list:
        return sorted(json.dumps(g.get("combinedBbox"), sort_keys=True) + str(g.get("type"))
                      for g in data.get("groups", []) if isinstance(g, dict))
    def kept_split(data: dict) -> object:  # where an import asked to keep the page (a person's file: nowhere)
        marker = data.get(IMPORTED)
        return marker.get("split") if isinstance(marker, dict) else None

    return boxes(a) == boxes(b) and (a.get("imageWidth"), a.get("imageHeight")) == \
        (b.get("imageWidth"), b.get("imageHeight")) and (IMPORTED not in a or kept_split(a) == kept_split(b))


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def name_pages(pages: list[ImportedPage], into: str | None, fallback: str, per_page: bool = False) -> list[str]:
    """Each page's document and page name (file-name safe); one page per name in a document. ``per_page``:
    every page a document of its own. Returns notes (pages whose names show no workbook)."""
    seen: dict[tuple[str, str], str] = {}
    unnamed = [p.name for p in pages if not into and not per_page and document_of(p.name, "\0") == "\0"]
    for page in pages:
        page.document = safe_name(page.name if per_page else into or document_of(page.name, fallback))
        page.page = safe_name(page.name)
        key = (page.document.casefold(), page.page.casefold())
        if key in seen:
            raise UserError(f"{page.source} and {seen[key]} would both become page {page.page} of document "
                            f"{page.document}: the export has the same page twice")
        seen[key] = page.source
    if not unnamed:
        return []
    shown = ", ".join(unnamed[:3]) + (" ..." if len(unnamed) > 3 else "")
    return [f"{len(unnamed)} of {len(pages)} page(s) have names that show no workbook ({shown}); they all go to "
            f"one document, {safe_name(fallback)!r}, which train, val and test cannot share. If they are pages "
            "of different workbooks, import each workbook with `--into NAME`; if every page stands alone "
            "(photos, frames), `--document-per-page`"]


def plan(pages: list[ImportedPage], dataset_root: Path, tool: str, export: str, params: ExportParams,
         into: str | None, fallback: str, per_page: bool = False) -> Plan:
    """Name the pages, check their boxes and compare them with the app's folder; write nothing."""
    naming = name_pages(pages, into, fallback, per_page)
    dropped = drop_classes(pages, params)
    check_classes(pages, params)
    for page in pages:
        check_boxes(page, params)
    root = dataset_root.resolve()
    result = Plan(notes=naming + dropped)
    held = imported_sources(root)
    app = AppFolder(root)
    for page in pages:
        where = held.get(page.source_digest(), [])
        if where and f"{page.document}/{page.page}" not in where:
            if _unchanged_where_it_is(page, where[0], app, tool, export, params):
                result.unchanged.append(page)  # this export again under another file name: the page as it was
            else:
                result.held.append((page, where[0]))  # the same image, imported before under another name
            continue
        if not app.document(page.document).resolve().is_relative_to(app.documents):
            raise UserError(f"{page.source}: document {page.document!r} would be written outside {root}")
        groups_file = app.groups_file(page.document, page.page)
        image_file = app.new_page_image(page.document, page.page)
        existing = _read_json(groups_file)
        marker = existing.get(IMPORTED) if existing is not None else None
        if existing is not None and isinstance(marker, dict) and marker.get("sha256") == page.source_digest() \
                and image_file.is_file() \
                and _same_boxes(existing, groups_document(page, tool, export, params)):
            result.unchanged.append(page)  # the same source bytes and boxes: no need to re-encode the image
            continue
        if existing is not None and not page.boxes and any(isinstance(g, dict) and g.get("combinedBbox")
                                                            for g in existing.get("groups") or []):
            result.emptied.append(page)
        same_image = image_file.is_file() and image_file.read_bytes() == _png_bytes(page.image, page.source)
        if not groups_file.exists() and (same_image or not image_file.exists()):
            result.added.append(page)  # new, or a page of the app's that nobody had labeled
        elif existing is not None and same_image and _same_boxes(existing, groups_document(page, tool, export, params)):
            result.unchanged.append(page)
        elif existing is not None and _imported_by(existing, tool):
            result.changed.append(page)
        else:
            result.conflicts.append(page)
    placed = {p.document for p in [*result.added, *result.changed, *result.conflicts, *result.unchanged]}
    if safe_name(fallback) not in placed:  # the fallback document the naming note announced gets no page
        result.notes = [note for note in result.notes if f"{safe_name(fallback)!r}" not in note]
    kept = {(p.document, p.page) for p in pages}
    for document in sorted({p.document for p in pages}):
        for page_name in app.labeled(document):
            data = _read_json(app.groups_file(document, page_name))
            if data is not None and _imported_by(data, tool) and (document, page_name) not in kept:
                result.removed.append(f"{document}/{page_name}")
    return result


def _unchanged_where_it_is(page: ImportedPage, where: str, app: AppFolder, tool: str, export: str,
                           params: ExportParams) -> bool:
    """Whether the page an earlier import of this tool wrote at ``where`` (doc/page) holds these boxes; then
    ``page`` takes that name: the same export met under another file name (a zip of the folder) is unchanged,
    not pages held back from a document named after the new file."""
    document, _, name = where.partition("/")
    existing = _read_json(app.groups_file(document, name))
    if existing is None or not _imported_by(existing, tool):
        return False
    if not _same_boxes(existing, groups_document(page, tool, export, params)):
        return False
    page.document, page.page = document, name
    return True


def imported_sources(root: Path) -> dict[str, list[str]]:
    """sha256 of an imported page's source image -> the doc/pages holding it, for every page an import
    wrote (a blank page may be in a workbook twice)."""
    found: dict[str, list[str]] = {}
    app = AppFolder(root)
    for document in app.document_names():
        for page in app.labeled(document):
            data = _read_json(app.groups_file(document, page))
            marker = data.get(IMPORTED) if data is not None else None
            if isinstance(marker, dict) and isinstance(marker.get("sha256"), str):
                found.setdefault(marker["sha256"], []).append(f"{document}/{page}")
    return found


def _imported_by(data: dict, tool: str) -> bool:
    marker = data.get(IMPORTED)
    return isinstance(marker, dict) and marker.get("from") == tool


def apply(result: Plan, dataset_root: Path, tool: str, export: str, params: ExportParams, replace: bool,
          allow_empty: bool = False) -> int:
    """Write the added and changed pages (and the conflicting ones with ``replace``); return how many.
    Pages whose boxes would all go (none in the export) are written only with ``allow_empty``."""
    if result.emptied and not allow_empty:
        listed = ", ".join(f"{p.document}/{p.page} ({p.source}{', no label file' if p.missing_labels else ''})"
                           for p in result.emptied[:10])
        raise UserError(f"{len(result.emptied)} page(s) have boxes in {dataset_root} but none in this export: "
                        f"{listed}{' ...' if len(result.emptied) > 10 else ''}. Nothing was written. If the export "
                        f"is right and those pages have no questions, run again with --allow-empty.")
    if result.conflicts and not replace:
        listed = ", ".join(f"{p.document}/{p.page}" for p in result.conflicts[:10])
        more = f" and {len(result.conflicts) - 10} more" if len(result.conflicts) > 10 else ""
        raise UserError(f"{len(result.conflicts)} page(s) already in {dataset_root} differ from this export and were "
                        f"not written by an import of it: {listed}{more}. Nothing was written. Run again with "
                        f"--replace to overwrite them with the export's boxes.")
    written = 0
    app = AppFolder(dataset_root)
    for page in [*result.added, *result.changed, *(result.conflicts if replace else [])]:
        image_file = app.new_page_image(page.document, page.page)
        data = _png_bytes(page.image, page.source)
        if not image_file.is_file() or image_file.read_bytes() != data:
            files.write_bytes(image_file, data)
        write_json(app.groups_file(page.document, page.page), groups_document(page, tool, export, params))
        written += 1
    return written

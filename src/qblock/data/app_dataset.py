"""The labeling app's dataset_root: `documents/{document}/pages/{page}.png` beside
`groups/{page}_groups.json`. The export stage, `qblock status` and the other readers of the
app's folder share this, so they all see the same pages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from array import array
from pathlib import Path
from typing import NamedTuple

from PIL import Image, UnidentifiedImageError

from qblock.core.errors import UserError
from qblock.data.app_folder import DOCUMENTS, GROUPS, GROUPS_SUFFIX, IMAGE_SUFFIXES, PAGES, AppFolder, page_images
from qblock.data.labels import page_key
from qblock.data.page_image import needs_flattening, page_limits, size_problem
from qblock.data.problems import ProblemLog

_ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class PageHeader(NamedTuple):
    width: int  # displayed (EXIF rotation applied)
    height: int
    flat: bool  # transparent or more than 8 bits a pixel: needs flattening before training reads it


def read_page_header(path: Path, rel: str, log: ProblemLog) -> PageHeader | None:
    """The image's displayed size (EXIF rotation applied) and whether it needs flattening, from its header;
    None if it cannot be read."""
    try:
        with page_limits(), Image.open(path) as image:
            width, height = image.size
            flat = needs_flattening(image)
            if problem := size_problem(image.size):
                log.error(rel, problem)
                return None
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
        return PageHeader(height, width, flat)
    return PageHeader(width, height, flat)


IMPORTED = "imported"  # the groups JSON key that marks a file written by `qblock import`
KEPT_SIDES = ("train", "val", "test")


class PageLabels(NamedTuple):
    groups: list
    split: str | None  # where `qblock import --keep-split` keeps the page; None: the split by document decides


def read_groups(path: Path, rel: str, log: ProblemLog) -> PageLabels | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # Windows editors and PowerShell 5 write a BOM
    except UnicodeDecodeError:
        log.error(rel, "not UTF-8 text")
        return None
    except json.JSONDecodeError as exc:
        log.error(rel, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
        return None
    except RecursionError:
        log.error(rel, "not a groups file: JSON nested too deeply to read")
        return None
    except ValueError as exc:  # Python's limit on the digits of an integer, for one
        digits = re.search(r"value has (\d+) digits", str(exc))
        log.error(rel, f"not a groups file: a number of {digits[1]} digits (no box has one)" if digits
                  else f"not a groups file: {str(exc).split(';')[0]}")
        return None
    if not isinstance(data, dict) or "groups" not in data:
        log.error(rel, "no `groups` list at the top level")
        return None
    if not isinstance(data["groups"], list):
        log.error(rel, f"`groups` is a {type(data['groups']).__name__}, not a list")
        return None
    marker = data.get(IMPORTED)
    split = marker.get("split") if isinstance(marker, dict) else None
    if split is not None and split not in KEPT_SIDES:
        log.error(rel, f"`{IMPORTED}.split` is {split!r}: train, val or test (where the import keeps the page)")
        return None
    return PageLabels(data["groups"], split)


# What Windows cannot hold in a file or folder name (the desktop checks the app's folder out there)
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def windows_name_problem(name: str) -> str | None:
    """Why Windows cannot hold ``name`` as a file or folder name, or None."""
    if _WINDOWS_FORBIDDEN.search(name):
        return "has a character Windows does not allow in a name (< > : \" / \\ | ? * or a control character)"
    if name.endswith((".", " ")):
        return "ends with a dot or a space, which Windows drops"
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        return f"is a name Windows reserves ({name.split('.')[0].upper()})"
    return None


def _folded(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def name_problems(sources: list[PageSource], log: ProblemLog) -> None:
    """Documents and pages the desktop (Windows, NTFS) could not check out, or would fold into one: names
    Windows cannot hold, and names that differ only by case or Unicode form (macOS writes Korean in NFD,
    other tools in NFC): each logged as an error naming the file."""
    seen: dict[str, str] = {}
    documents: dict[str, tuple[str | None, str]] = {}  # a document's problem and folded name, once per document
    for source in sources:
        if source.document not in documents:
            documents[source.document] = (windows_name_problem(source.document), _folded(source.document))
        document_problem, folded_document = documents[source.document]
        if document_problem:
            log.error(source.groups, f"{source.document!r} {document_problem}: rename it in the app")
        elif page_problem := windows_name_problem(source.page):
            log.error(source.groups, f"{source.page!r} {page_problem}: rename it in the app")
        for path in (source.groups, source.image):
            if path is None:
                continue
            folder, _, file = path.rpartition("/")  # documents/{document}/{groups|pages}/{file}
            folded = f"{folded_document}/{folder.rpartition('/')[2]}/{_folded(file)}"
            if folded in seen and seen[folded] != path:
                log.error(path, f"differs from {seen[folded]} only by {how_they_differ(path, seen[folded])}: on the "
                          f"Windows desktop (and in the export) they are one file. Rename one in the app")
            seen.setdefault(folded, path)


def unicode_form(name: str) -> str:
    """'NFC', 'NFD' or 'mixed': how a name writes its composed letters (macOS writes Korean in NFD)."""
    nfc, nfd = unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)
    return "NFC" if name == nfc else "NFD" if name == nfd else "mixed"


def how_they_differ(one: str, other: str) -> str:
    """How two names that fold together differ, so the two, which print alike, can be told apart."""
    if unicodedata.normalize("NFC", one) == unicodedata.normalize("NFC", other):
        return (f"Unicode form (this one is written {unicode_form(one)}, the other {unicode_form(other)}: "
                "they print alike)")
    return "letter case"


def folded_together(documents: list[str]) -> set[str]:
    """The documents whose names differ from another's only by letter case or Unicode form."""
    groups: dict[str, list[str]] = {}
    for name in documents:
        groups.setdefault(_folded(name), []).append(name)
    return {name for names in groups.values() if len(names) > 1 for name in names}


def outside_links(dataset_root: Path, documents: bool = True) -> list[str]:
    """Links under ``documents/`` (files or folders) that lead outside the dataset root: followed, they
    would put another folder's files into the pipeline, DVC's cache and the NAS. ``documents=False``: not
    inside the document folders' `pages/` and `groups/` (export finds those in its own listing of them)."""
    root = dataset_root.resolve()
    found = []
    folders = [(AppFolder(dataset_root).documents, 0)]
    while folders:  # DirEntry knows a link and a folder from the listing itself: no stat per file
        folder, depth = folders.pop()
        for entry in _entries(folder):
            if entry.is_symlink():
                found += _leading_outside(entry, root)
            elif entry.is_dir() and (documents or depth != 1 or entry.name not in (PAGES, GROUPS)):
                folders.append((Path(entry.path), depth + 1))
    return sorted(found)


def _leading_outside(entry: os.DirEntry, root: Path) -> list[str]:
    path = Path(entry.path)
    return [] if path.resolve().is_relative_to(root) else [f"{path.as_posix()} -> {os.readlink(path)}"]


class PageSource(NamedTuple):
    """One labeled page in the app's dataset: its groups file and page image (relative paths)."""

    key: str
    document: str
    page: str
    groups: str
    image: str | None
    groups_stat: list[int]  # [size, mtime_ns]
    image_stat: list[int] | None


def _entries(folder: Path | str) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stat(entry: os.DirEntry) -> list[int]:
    """[size, mtime_ns]; [-1, -1] for a file that cannot be stat'ed (a dangling link): reading it says why."""
    try:
        stat = entry.stat()
    except OSError:
        return [-1, -1]
    return [stat.st_size, stat.st_mtime_ns]


def check_pages_present(root: Path, dataset_root: Path) -> None:
    """Stop before the pipeline starts when the labeled pages are not on this machine (or in this copy).

    DVC alone would fail at the export stage with a bare "No such file or directory"; this says
    why the folder is missing and what brings it.
    """
    if AppFolder(dataset_root).documents.is_dir():
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


class DocumentFiles(NamedTuple):
    """One document's listing: its groups files and page images (each with its [size, mtime_ns]), a
    fingerprint of every name, size and modification time among them, and the links among them that lead
    outside the dataset root."""

    name: str
    groups: list[tuple[os.DirEntry, list[int]]]
    pages: list[tuple[os.DirEntry, list[int]]]  # every page image, whether labeled or not
    fingerprint: str
    outside_links: list[str]


def list_documents(dataset_root: Path) -> list[str]:
    """The document folders' names, sorted."""
    check_pages_present(Path.cwd(), dataset_root)
    return AppFolder(dataset_root).document_names()


def _stated(entries: list[os.DirEntry], suffixes: str | tuple[str, ...]) -> list[tuple[os.DirEntry, list[int]]]:
    """The entries whose names end with ``suffixes``, each with its [size, mtime_ns] (see _stat)."""
    return [(e, _stat(e)) for e in entries if e.name.endswith(suffixes)]


def list_document(dataset_root: Path, document: str, resolved_root: Path | None = None) -> DocumentFiles:
    """A document's groups files and page images, each stat'ed once (``os.scandir``; on Windows the listing
    carries the file times, so no file is opened or stat'ed twice). The fingerprint follows the listing's
    order, which a folder keeps while its files do: were it to change, the document is only looked at again.
    ``resolved_root``: ``dataset_root.resolve()``, when the caller lists many documents.

    At 100,000 pages a re-run lists every document to find the few that changed: the fingerprint is made
    from the names and one array of numbers, and the pages are matched to their groups files only for a
    document that changed (document_sources)."""
    folder = os.path.join(dataset_root, DOCUMENTS, document)  # a str: 4,000 Paths cost 0.1 s at 100,000 pages
    listed = _entries(os.path.join(folder, GROUPS)), _entries(os.path.join(folder, PAGES))
    root = resolved_root or dataset_root.resolve()
    links = [link for entries in listed for e in entries if e.is_symlink() for link in _leading_outside(e, root)]
    groups, pages = _stated(listed[0], GROUPS_SUFFIX), _stated(listed[1], IMAGE_SUFFIXES)
    digest = hashlib.blake2b(digest_size=12)
    digest.update("\n".join([e.name for e, _ in groups] + ["\0"] + [e.name for e, _ in pages])
                  .encode("utf-8", "surrogateescape"))
    digest.update(array("q", [n for _, stat in (*groups, *pages) for n in stat]).tobytes())
    return DocumentFiles(document, groups, pages, digest.hexdigest(), links)


def document_sources(files: DocumentFiles) -> tuple[list[PageSource], int]:
    """A document's labeled pages (groups file and page image), and the count of its page images without a
    groups file."""
    document = files.name
    by_name = {e.name: (e, stat) for e, stat in files.pages}
    images = {page: by_name[name] for page, name in page_images(by_name).items()}  # page_001.png over .jpg
    sources = []
    for entry, stat in sorted(files.groups, key=lambda item: item[0].name):
        page = entry.name[: -len(GROUPS_SUFFIX)]
        image, image_stat = images.get(page, (None, None))
        sources.append(PageSource(
            page_key(document, page), document, page, f"{DOCUMENTS}/{document}/{GROUPS}/{entry.name}",
            f"{DOCUMENTS}/{document}/{PAGES}/{image.name}" if image else None, stat, image_stat,
        ))
    labeled = {source.page for source in sources}
    return sources, len(images.keys() - labeled)

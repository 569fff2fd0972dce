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
from array import array
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from itertools import chain, repeat
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from PIL import Image, ImageDraw
from rich.console import Console

from qblock.config.schema import Params
from qblock.core import collector
from qblock.core.code_closure import code_digest
from qblock.core.progress import map_pages
from qblock.data.app_folder import AppFolder
from qblock.data.contact_sheet import save_contact_sheet
from qblock.data.image_checks import image_problem
from qblock.data.label_checks import check_labels
from qblock.data.labels import parse_clean
from qblock.data.problems import Problem, ProblemLog, write_json
from qblock.data.yolo_folder import SPLITS, file_names, read_manifest, read_pages, split_list
from qblock.data.yolo_folder import image_name as image_name_of


class CheckCache:
    """What validate found clean, per document, so a re-run checks only the documents whose files changed.

    The index (``path``, JSON) has a document's ``fp`` (a fingerprint of its exported files' names, sizes and
    times, and the class count), and what the statistics and the duplicate check need of its pages: their
    image ``names`` and content ``digests`` (each a string of them all), label ``rows`` and ``boxes`` count,
    and the ``warnings`` its pages drew (said again when it is carried over: the report is the same either way).
    Every box's width and height sit in ``path``.npy, a document's after the one before it; each document's
    per-page stamps (image name -> [size, mtime_ns, width, height]) in a file of its own, read only when it
    changed. At 100,000 pages this reads a few MB and a few objects per page, not millions of numbers.
    A document is carried over whole while its fingerprint holds; in one that changed, an image is read
    again only when its size or time changed. Only documents found clean are saved. The whole cache
    belongs to the code that filled it (``code``): other code checks every page again.
    """

    VERSION = 4

    def __init__(self, path: Path) -> None:
        import numpy as np

        self.path, self.boxes_path, self.stamps_dir = path, path.with_suffix(".npy"), path.with_suffix("")
        self.code = code_digest("qblock.stages.validate")  # other checks: every document is checked again
        self.entries: dict[str, dict] = {}
        self.boxes = np.zeros((0, 2))
        try:
            data = orjson.loads(path.read_bytes())
            raw = self.boxes_path.read_bytes()
            if data.get("version") == self.VERSION and data.get("code") == self.code \
                    and data.get("boxes_digest") == _digest(raw):
                self.boxes = np.load(io.BytesIO(raw))
                self.entries = data["documents"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        self.offsets: dict[str, int] = {}
        offset = 0
        for name, entry in self.entries.items():
            self.offsets[name] = offset
            offset += entry["boxes"]
        self.fresh: dict[str, dict] = {}
        self.fresh_boxes: dict[str, Any] = {}
        self.fresh_stamps: dict[str, dict] = {}

    def carried(self, document: str) -> Any:
        """A document's boxes (n x 2: width, height) as the cache has them."""
        start = self.offsets[document]
        return self.boxes[start : start + self.entries[document]["boxes"]]

    def stamps(self, document: str) -> dict[str, list]:
        """A document's page stamps: image name -> [size, mtime_ns, width, height]; empty when unknown."""
        try:
            data = orjson.loads(self._stamps_file(document).read_bytes())
            return data["pages"] if data["document"] == document else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _stamps_file(self, document: str) -> Path:
        name = hashlib.blake2b(document.encode("utf-8", "surrogateescape"), digest_size=10).hexdigest()
        return self.stamps_dir / f"{name}.json"

    def save(self) -> None:
        """Write what was found clean; nothing when every document was carried over as it was."""
        import numpy as np

        if not self.fresh_stamps and list(self.fresh) == list(self.entries):
            return
        for document, stamps in self.fresh_stamps.items():
            if document in self.fresh:
                write_json(self._stamps_file(document), {"document": document, "pages": stamps}, compact=True)
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate([self.fresh_boxes[d] for d in self.fresh] or [np.zeros((0, 2))]))
        raw = buffer.getvalue()
        self.boxes_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.boxes_path.with_name(f"{self.boxes_path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(raw)
        tmp.replace(self.boxes_path)
        write_json(self.path, {"version": self.VERSION, "code": self.code, "boxes_digest": _digest(raw),
                               "documents": self.fresh}, compact=True)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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


def _listing(folder: Path) -> tuple[dict[str, tuple[str, list[int]]], list[str]]:
    """stem -> (file name, [size, mtime_ns]) for the files in a folder, and every name in it, from one
    directory listing."""
    listing, names = {}, []
    for entry in os.scandir(folder):
        stat = entry.stat()
        names.append(entry.name)
        listing[entry.name.rsplit(".", 1)[0]] = (entry.name, [stat.st_size, stat.st_mtime_ns])
    return listing, names


class Checked(NamedTuple):
    images: list[str]  # every file in images/
    rows: dict[str, int]  # clean image name -> its label's row count
    digests: dict[str, str]  # clean image name -> a hash of its bytes
    boxes: list[Any]  # arrays of every clean label's box widths and heights (n x 2)


DIGEST_CHARS = 32  # check_page's blake2b of 16 bytes, in hex


class Pages(NamedTuple):
    """A document's pages as found in the export folder: image and label names, and [image size, image
    mtime_ns, label size, label mtime_ns] of each page, one after the other."""

    images: list[str]
    labels: list[str]
    stamps: list[int]


def _fingerprint(class_count: int, pages: Pages) -> str:
    """A hash of a document's exported files' names, sizes and modification times (and the class count)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{class_count}\n".encode())
    digest.update("\n".join(pages.images).encode("utf-8", "surrogateescape"))
    digest.update(array("q", pages.stamps).tobytes())
    return digest.hexdigest()


def _as_expected(export_dir: Path, image_files: list[str], label_files: list[str],
                 expected: dict[str, list[tuple[str, str]]]) -> dict[str | None, Pages] | None:
    """Each document's pages, stat'ed by name, when the folder holds exactly the files the manifest names
    (the common case: one stat per file, no listing of 200,000 stats to match by stem); None otherwise.

    As many files as the manifest names, each of them there (its stat worked, and the manifest names no
    file twice): no other file, nothing to pair by stem."""
    wanted = sum(len(pairs) for pairs in expected.values())
    if len(image_files) != wanted or sum(1 for name in label_files if name.endswith(".txt")) != wanted:
        return None
    images_at, labels_at = f"{export_dir / 'images'}{os.sep}", f"{export_dir / 'labels'}{os.sep}"
    stat = os.stat
    found: dict[str | None, Pages] = {}
    try:
        for document, pairs in expected.items():
            if not pairs:
                continue
            stamps: list[int] = []
            for image, label in pairs:
                a, b = stat(images_at + image), stat(labels_at + label)
                stamps += (a.st_size, a.st_mtime_ns, b.st_size, b.st_mtime_ns)
            found[document] = Pages([image for image, _ in pairs], [label for _, label in pairs], stamps)
    except OSError:  # one is missing (or was removed meanwhile): the listing says which
        return None
    return found


def _by_stem(export_dir: Path, log: ProblemLog, expected: dict[str, list[tuple[str, str]]]
             ) -> tuple[dict[str | None, Pages], list[str]]:
    """Each document's pages found by matching the files in the folder by stem: an image and its label; every
    image or label without the other is an error. Files of no document in the manifest are under None."""
    with ThreadPoolExecutor(2) as pool:  # a stat per file: the two folders at once
        (images, image_files), (all_labels, _) = pool.map(_listing, (export_dir / "images", export_dir / "labels"))
    labels = {stem: v for stem, v in all_labels.items() if v[0].endswith(".txt")}
    for stem in sorted(images.keys() - labels.keys()):
        log.error(export_dir / "images" / images[stem][0],
                  "image without a label file (an empty .txt marks a page with no questions)")
    for stem in sorted(labels.keys() - images.keys()):
        log.error(export_dir / "labels" / labels[stem][0], "label file without an image")
    found: dict[str | None, Pages] = {}
    placed: set[str] = set()
    for document, pairs in expected.items():  # in the manifest's order, as _as_expected
        for _, label in pairs:
            stem = label[:-4]
            if stem in images and stem in labels and stem not in placed:
                placed.add(stem)
                _add_page(found.setdefault(document, Pages([], [], [])), images[stem], labels[stem])
    for stem in images:
        if stem in labels and stem not in placed:
            _add_page(found.setdefault(None, Pages([], [], [])), images[stem], labels[stem])
    return found, image_files


def _add_page(pages: Pages, image: tuple[str, list[int]], label: tuple[str, list[int]]) -> None:
    pages.images.append(image[0])
    pages.labels.append(label[0])
    pages.stamps.extend((*image[1], *label[1]))


def check_files(export_dir: Path, class_count: int, cache: CheckCache, log: ProblemLog,
                expected: dict[str, list[tuple[str, str]]]) -> Checked:
    """Every image and label file checked, or known clean from the cache. ``expected``: each document's
    (image, label) names, from the manifest; a file of no document in it is checked every time."""
    import numpy as np

    image_files, label_files = os.listdir(export_dir / "images"), os.listdir(export_dir / "labels")
    grouped = _as_expected(export_dir, image_files, label_files, expected)
    if grouped is None:
        grouped, image_files = _by_stem(export_dir, log, expected)
    checked = Checked(image_files, {}, {}, [])
    jobs, pending = [], []
    for document, pages in grouped.items():
        fingerprint = _fingerprint(class_count, pages)
        known = cache.entries.get(document) if document is not None else None
        if document is not None and known is not None and known["fp"] == fingerprint:
            names, digests = known["names"].split("\n"), known["digests"]
            checked.rows.update(zip(names, known["rows"], strict=True))
            checked.digests.update(zip(names, map(digests.__getitem__, _digest_slices(len(names))), strict=True))
            cache.fresh[document], cache.fresh_boxes[document] = known, cache.carried(document)
            checked.boxes.append(cache.fresh_boxes[document])
            for file, message in known.get("warnings", []):  # a document carried over says what it said
                log.warning(file, message)
            continue
        before = cache.stamps(document) if document is not None and known is not None else {}
        digest_of = {name: known["digests"][i * DIGEST_CHARS : (i + 1) * DIGEST_CHARS]
                     for i, name in enumerate(known["names"].split("\n"))} if before and known else {}
        for index, (image_name, label_name) in enumerate(zip(pages.images, pages.labels, strict=True)):
            image_stamp = pages.stamps[index * 4 : index * 4 + 2]
            facts = before.get(image_name)
            image_known = facts is not None and facts[:2] == image_stamp and image_name in digest_of
            jobs.append((str(export_dir), None if image_known else image_name, label_name, class_count))
            pending.append((document, fingerprint, image_name, image_stamp,
                            [*facts[:4], digest_of[image_name]] if image_known and facts is not None else None))
    fresh: dict[str | None, dict] = {}
    broken: set[str | None] = set()
    for (document, fingerprint, image_name, image_stamp, facts), result in zip(
            pending, map_pages(check_page, jobs, "validate"), strict=True):
        log.problems.extend(result.problems)
        said = [[p.file, p.message] for p in result.problems if p.severity == "warning"]
        if facts is None and result.size is not None:
            facts = [*image_stamp, *result.size, result.digest or ""]
        if facts is None or result.labels is None:
            broken.add(document)
            continue
        values = result.labels.split()
        entry = fresh.setdefault(document, {"fp": fingerprint, "names": [], "digests": [], "rows": [], "wh": [],
                                            "stamps": {}, "warnings": []})
        entry["warnings"].extend(said)
        entry["names"].append(image_name)
        entry["digests"].append(facts[4])
        entry["rows"].append(len(values) // 5)
        entry["wh"].extend(values[i * 5 + 3 : i * 5 + 5] for i in range(len(values) // 5))
        entry["stamps"][image_name] = facts[:4]
    for document, entry in fresh.items():
        boxes = np.array(entry["wh"], dtype=np.float64).reshape(-1, 2)
        checked.rows.update(zip(entry["names"], entry["rows"], strict=True))
        checked.digests.update(zip(entry["names"], entry["digests"], strict=True))
        checked.boxes.append(boxes)
        if document is not None and document not in broken:
            cache.fresh[document] = {"fp": entry["fp"], "names": "\n".join(entry["names"]),
                                     "digests": "".join(entry["digests"]), "rows": entry["rows"], "boxes": len(boxes),
                                     **({"warnings": entry["warnings"]} if entry["warnings"] else {})}
            cache.fresh_boxes[document], cache.fresh_stamps[document] = boxes, entry["stamps"]
    return checked


@lru_cache(maxsize=1024)
def _digest_slices(count: int) -> list[slice]:
    """The slices of ``count`` digests kept end to end in one string."""
    return [slice(i, i + DIGEST_CHARS) for i in range(0, count * DIGEST_CHARS, DIGEST_CHARS)]


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


def in_the_app(problems: list[Problem], pages: list[dict], export_dir: Path, dataset_root: Path) -> list[Problem]:
    """Problems of exported files named by the file a person opens: the page image or groups file in the
    app's dataset_root, with the exported copy in brackets (`data/yolo/images/doc__page.png` is not a
    path anyone made)."""
    records = {}
    for page in pages:
        records[str(export_dir / "images" / image_name_of(page))] = (page, dataset_root / page["image"])
        records[str(export_dir / "labels" / f"{page['key']}.txt")] = (
            page, AppFolder(dataset_root).groups_file(page["document"], page["page"]))
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
            in_app.update((image_name_of(p), (dataset_root / p["image"]).as_posix()) for p in read_pages(export_dir)[1])
        return in_app.get(image_name, image_name)

    check_duplicates(lists, found.digests, found.rows, export_dir, log, shown)
    if dataset_root is not None and log.problems:
        log.problems = in_the_app(log.problems, read_pages(export_dir)[1], export_dir, dataset_root)

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

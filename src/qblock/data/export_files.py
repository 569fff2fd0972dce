"""The export folder's files as validate finds them on disk: each document's page images and label files,
paired, with their sizes and times (what says whether a document changed since it was last checked)."""

from __future__ import annotations

import hashlib
import os
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from qblock.data.problems import ProblemLog


class Pages(NamedTuple):
    """A document's pages as found in the export folder: image and label names, and [image size, image
    mtime_ns, label size, label mtime_ns] of each page, one after the other."""

    images: list[str]
    labels: list[str]
    stamps: list[int]

    def image_stamp(self, index: int) -> list[int]:
        """[size, mtime_ns] of the page's image."""
        return self.stamps[index * 4 : index * 4 + 2]


def fingerprint(class_count: int, pages: Pages) -> str:
    """A hash of a document's exported files' names, sizes and modification times (and the class count)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{class_count}\n".encode())
    digest.update("\n".join(pages.images).encode("utf-8", "surrogateescape"))
    digest.update(array("q", pages.stamps).tobytes())
    return digest.hexdigest()


def find_pages(export_dir: Path, expected: dict[str, list[tuple[str, str]]], log: ProblemLog
               ) -> tuple[dict[str | None, Pages], list[str]]:
    """Each document's pages (under None: files of no document in the manifest), and every file in
    images/. ``expected``: each document's (image, label) names, from the manifest. An image without its
    label, or a label without its image, is an error in ``log``."""
    image_files, label_files = os.listdir(export_dir / "images"), os.listdir(export_dir / "labels")
    grouped = _as_expected(export_dir, image_files, label_files, expected)
    if grouped is None:
        grouped, image_files = _by_stem(export_dir, log, expected)
    return grouped, image_files


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


def _listing(folder: Path) -> tuple[dict[str, tuple[str, list[int]]], list[str]]:
    """stem -> (file name, [size, mtime_ns]) for the files in a folder, and every name in it, from one
    directory listing."""
    listing, names = {}, []
    for entry in os.scandir(folder):
        stat = entry.stat()
        names.append(entry.name)
        listing[entry.name.rsplit(".", 1)[0]] = (entry.name, [stat.st_size, stat.st_mtime_ns])
    return listing, names


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

"""The labeling app's folder, spelled in one place.

The app keeps each document as ``documents/{document}/`` with its page images in ``pages/``
(``{page}.png``, or ``.jpg``/``.jpeg``), a person's labels in ``groups/{page}_groups.json``, and
qblock's proposals in ``proposals/{page}_groups.json``. Every module that reads or writes the app's
folder asks an ``AppFolder`` where a file is, so the layout and "png wins over jpg" live here only.
(Export's listing of 100,000 pages uses the same names through ``os.scandir``: see data/app_dataset.py.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DOCUMENTS = "documents"
PAGES = "pages"
GROUPS = "groups"
PROPOSALS = "proposals"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # in order of preference: page_001.png wins over page_001.jpg
GROUPS_SUFFIX = "_groups.json"


def page_images(names: Iterable[str]) -> dict[str, str]:
    """Page name -> its image's file name, among ``names`` (one folder's files); the earlier suffix in
    IMAGE_SUFFIXES wins when a page has two."""
    images: dict[str, str] = {}
    for suffix in reversed(IMAGE_SUFFIXES):
        images |= {name[: -len(suffix)]: name for name in names if name.endswith(suffix)}
    return images


def page_of(labels_file: Path | str) -> str:
    """The page a groups or proposal file belongs to (``page_001_groups.json`` -> ``page_001``)."""
    name = Path(labels_file).name
    return name[: -len(GROUPS_SUFFIX)] if name.endswith(GROUPS_SUFFIX) else Path(name).stem


def _names(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(folder) if entry.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []


@dataclass(frozen=True)
class AppFolder:
    """The app's dataset_root: where each document's pages, labels and proposals are."""

    root: Path

    @property
    def documents(self) -> Path:
        return self.root / DOCUMENTS

    def document(self, document: str) -> Path:
        return self.documents / document

    def pages_folder(self, document: str) -> Path:
        return self.document(document) / PAGES

    def groups_folder(self, document: str) -> Path:
        return self.document(document) / GROUPS

    def proposals_folder(self, document: str) -> Path:
        return self.document(document) / PROPOSALS

    def groups_file(self, document: str, page: str) -> Path:
        """A person's labels of a page (whether the file is there or not)."""
        return self.groups_folder(document) / f"{page}{GROUPS_SUFFIX}"

    def proposal_file(self, document: str, page: str) -> Path:
        """qblock's proposal for a page (whether the file is there or not)."""
        return self.proposals_folder(document) / f"{page}{GROUPS_SUFFIX}"

    def new_page_image(self, document: str, page: str) -> Path:
        """Where a page image qblock writes goes (a PNG)."""
        return self.pages_folder(document) / f"{page}{IMAGE_SUFFIXES[0]}"

    def page_image(self, document: str, page: str) -> Path | None:
        """The page's image (png wins over jpg), or None when it has none."""
        return next((path for suffix in IMAGE_SUFFIXES
                     if (path := self.pages_folder(document) / f"{page}{suffix}").is_file()), None)

    def document_names(self) -> list[str]:
        """The document folders' names, sorted ([] when there is no documents/ folder)."""
        try:
            return sorted(entry.name for entry in os.scandir(self.documents) if entry.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def images(self, document: str) -> dict[str, Path]:
        """A document's pages (name -> image file), sorted by name."""
        folder = self.pages_folder(document)
        return {page: folder / name for page, name in sorted(page_images(_names(folder)).items())}

    def labeled(self, document: str) -> list[str]:
        """The pages of a document that have a groups file, sorted."""
        return sorted(page_of(name) for name in _names(self.groups_folder(document)) if name.endswith(GROUPS_SUFFIX))

    def proposed(self, document: str) -> list[str]:
        """The pages of a document that have a proposal file, sorted."""
        return sorted(page_of(name) for name in _names(self.proposals_folder(document))
                      if name.endswith(GROUPS_SUFFIX))

    def unlabeled(self, document: str, images: dict[str, Path] | None = None) -> list[str]:
        """The pages of a document with an image and no groups file, sorted; ``images``: the document's
        images when the caller has listed them already (``images``)."""
        labeled = set(self.labeled(document))
        return [page for page in (self.images(document) if images is None else images) if page not in labeled]

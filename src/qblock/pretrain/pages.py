"""The base model's pages: HiLEx through `qblock import`, each exam paper capped, plus demo workbooks.

A paper's pages beyond ``max_per_document`` are dropped by a stable hash of their names, so a
334-page paper teaches no more than a 24-page one (more documents, not more pages). The demo
workbooks are split among ``demo_labelers`` people, each with the margin they draw round a
question, so no single convention is learned as the only one.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

from rich.console import Console

from qblock.config.schema import Params
from qblock.data.app_folder import AppFolder
from qblock.imports.importer import run_import
from qblock.labeling.demo_data import write_demo_dataset
from qblock.pretrain.recipe import PagesParams

DEMO_PREFIX = "demo"


def _rank(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def cap_documents(dataset_root: Path, most: int) -> int:
    """Keep ``most`` pages of each document (the lowest hashes of their names); return how many went."""
    dropped = 0
    app = AppFolder(dataset_root)
    for document in app.document_names():
        images = app.images(document)
        for page in sorted(images, key=_rank)[most:]:
            images[page].unlink()
            app.groups_file(document, page).unlink(missing_ok=True)
            dropped += 1
    return dropped


def add_demo_workbooks(dataset_root: Path, params: PagesParams) -> int:
    """``demo_documents`` drawn workbooks, as ``demo_labelers`` batches each labeled by its own person."""
    written = 0
    batches = max(1, min(params.demo_labelers, params.demo_documents))
    for batch in range(batches):
        count = params.demo_documents // batches + (1 if batch < params.demo_documents % batches else 0)
        seed = params.demo_seed + batch
        with tempfile.TemporaryDirectory(prefix="qblock-demo-") as work:
            written += write_demo_dataset(Path(work), count, params.demo_pages, seed)
            drawn, app = AppFolder(Path(work)), AppFolder(dataset_root)
            for document in drawn.document_names():
                shutil.move(drawn.document(document), app.document(f"{DEMO_PREFIX}-{seed}-{document}"))
    return written


def collect(hilex: Path, params: Params, pages: PagesParams, console: Console) -> None:
    """The app-style folder (``paths.dataset_root``) the recipe's export stage reads, written afresh."""
    dataset_root = Path(params.paths.dataset_root)
    shutil.rmtree(dataset_root, ignore_errors=True)
    run_import("roboflow", hilex, None, dataset_root, params.export, None, False, False, console)
    dropped = cap_documents(dataset_root, pages.max_per_document)
    console.print(f"pages: kept at most {pages.max_per_document} pages of each exam paper ({dropped} dropped)")
    written = add_demo_workbooks(dataset_root, pages)
    console.print(f"pages: {written} demo pages in {pages.demo_documents} workbooks by {pages.demo_labelers} labelers")

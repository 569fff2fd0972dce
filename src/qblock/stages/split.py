"""Stage `split`: train / val (/ test) by document, stable as the collection grows.

A document's split depends only on its own id (a salted hash compared with the fractions) or
on `split.pin`, never on the other documents: adding workbooks never moves an existing one
between train and val, so val mAP stays comparable across runs. Pages of one workbook never
straddle splits (their layouts are near-copies, which would flatter val mAP).

Val is where choices are made (the best epoch, the confidence threshold, ink snapping, the
champion), so its figures flatter the model. Test is a set of whole documents that nothing
chooses on: its crop rate is what a new workbook gets. A document is val below `val_fraction`,
test below `val_fraction + test_fraction`, train above (raising test_fraction moves train
documents only). A collection of fewer than MIN_DOCUMENTS_FOR_TEST documents gets no test split,
and split says so.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from rich.console import Console

from qblock.config.schema import Params, SplitParams
from qblock.core import collector
from qblock.core.errors import UserError
from qblock.data.problems import write_json
from qblock.data.yolo_folder import SPLITS, file_names, kept_splits, read_manifest

MIN_DOCUMENTS_FOR_TEST = 5  # 3 to train on, one to choose on, one to test on


def document_score(document: str, salt: str) -> float:
    """A stable number in [0, 1) for a document id."""
    digest = hashlib.sha256(f"{salt}\0{document}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_documents(documents: list[str], params: SplitParams, kept: frozenset[str] = frozenset()
                     ) -> tuple[dict[str, str], list[str]]:
    """Map each document to a split; also return notes for the user. ``kept``: the sides pages imported with
    --keep-split already fill (no document need be moved there)."""
    for document, split in params.pin.items():
        if split not in SPLITS:
            raise UserError(f"params.yaml: split.pin[{document!r}] = {split!r}; use one of {', '.join(SPLITS)}")
    if not 0 <= params.val_fraction < 1 or not 0 <= params.test_fraction < 1:
        raise UserError("params.yaml: split.val_fraction and split.test_fraction must lie in [0, 1)")
    if params.val_fraction + params.test_fraction >= 1:
        raise UserError("params.yaml: split.val_fraction + split.test_fraction must be below 1")
    notes = [f"split.pin names {d!r}, which has no exported pages" for d in params.pin if d not in documents]
    assignment: dict[str, str] = {}
    test_fraction = params.test_fraction if len(documents) >= MIN_DOCUMENTS_FOR_TEST else 0.0
    if params.test_fraction > 0 and not test_fraction:
        notes.append(f"{len(documents)} document(s) are too few for a test split (it takes "
                     f"{MIN_DOCUMENTS_FOR_TEST}): no figure is on a workbook nothing was chosen on, and val's, "
                     "where the epoch and threshold are chosen, flatter the model")
    for document in documents:
        score = document_score(document, params.salt)
        if document in params.pin:
            assignment[document] = params.pin[document]
        elif score < params.val_fraction:
            assignment[document] = "val"
        elif score < params.val_fraction + test_fraction:
            assignment[document] = "test"
        else:
            assignment[document] = "train"
    for split, fraction, least_train in (("val", params.val_fraction, 2), ("test", test_fraction, 3)):
        if fraction <= 0 or split in assignment.values() or split in kept:
            continue
        movable = [d for d in documents if assignment[d] == "train" and d not in params.pin]
        if len(movable) >= least_train:
            chosen = min(movable, key=lambda d: document_score(d, params.salt))
            assignment[chosen] = split
            notes.append(
                f"no document hashed into {split}; moved {chosen!r} there. Pin it (split.pin) to keep {split} "
                "fixed while the collection is this small"
            )
    if len(documents) == 1 and not kept:
        raise UserError(f"split: every page is in one document ({documents[0]!r}); train and val are split by "
                        f"document (a workbook's pages stay on one side), so it takes two at least. Put each "
                        f"workbook in its own document: `qblock import ... --into NAME` per workbook, or names that "
                        f"carry the workbook (algebra_p012.png -> algebra)")
    if "train" not in {*assignment.values(), *kept}:
        raise UserError(f"split: no document is left for training among {len(documents)} document(s)")
    if "val" not in {*assignment.values(), *kept}:
        raise UserError("split: val is empty; add documents or pin one to val in split.pin")
    return assignment, notes


def kept_notes(pages: list[tuple[str, str, str, str | None]], sides_of: dict[str, set[str]]) -> list[str]:
    """What pages imported with --keep-split do to the split: documents on more than one side."""
    kept = sum(1 for *_, side in pages if side)
    if not kept:
        return []
    straddling = sorted(name for name, sides in sides_of.items() if len(sides) > 1)
    return [f"{kept} page(s) keep the split their export gave them (`qblock import --keep-split`)"
            + (f"; {len(straddling)} document(s) have pages on more than one side ({', '.join(straddling[:5])}"
               f"{' ...' if len(straddling) > 5 else ''}), so val and test are not new documents: their figures "
               "compare with the export's own published ones, not what a new workbook gets" if straddling else "")]


def lopsided(counts: dict[str, dict[str, int]], fractions: dict[str, float]) -> list[str]:
    """Notes for a split whose share of pages is under half or over twice its fraction: documents are
    split whole, so one large document hashed into val can take most of the pages."""
    total = sum(c["pages"] for c in counts.values())
    notes = []
    for split, fraction in fractions.items():
        share = counts[split]["pages"] / total if total else 0.0
        if fraction > 0 and counts[split]["pages"] and not fraction / 2 <= share <= fraction * 2:
            notes.append(f"{split} holds {share:.0%} of the pages ({counts[split]['pages']} of {total}, "
                         f"{counts[split]['documents']} document(s)) where split.{split}_fraction asks for "
                         f"{fraction:.0%}: documents go whole, and their sizes differ. Pin documents "
                         f"(split.pin) to even it out")
    return notes


@collector.paused()  # bookkeeping over every page: no cycles to find (core/collector.py)
def run(export_dir: Path, out_dir: Path, params: SplitParams, console: Console) -> dict:
    manifest = read_manifest(export_dir)
    documents = sorted(name for name, data in manifest.documents.items() if data["pages"])
    pages = sorted((image.rpartition(".")[0], name, image, side) for name in documents  # by key, as before
                   for (image, _), side in zip(file_names(name, manifest.documents[name]),
                                               kept_splits(manifest.documents[name]), strict=True))
    kept = frozenset(side for *_, side in pages if side)
    assignment, notes = assign_documents(sorted({name for _, name, _, side in pages if not side}), params, kept)
    lists: dict[str, list[str]] = defaultdict(list)
    sides_of: dict[str, set[str]] = defaultdict(set)
    for _key, name, image, side in pages:
        lists[side or assignment[name]].append(f"images/{image}")
        sides_of[name].add(side or assignment[name])
    notes += kept_notes(pages, sides_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        target = out_dir / f"{split}.txt"
        if lists.get(split):
            target.write_text("\n".join(lists[split]) + "\n", encoding="utf-8")
        else:
            target.unlink(missing_ok=True)
    counts = {s: {"documents": sum(1 for sides in sides_of.values() if s in sides), "pages": len(lists.get(s, []))}
              for s in SPLITS}
    notes += lopsided(counts, {"val": params.val_fraction, "test": params.test_fraction})
    sides = {name: ",".join(sorted(found)) for name, found in sorted(sides_of.items())}  # "train,val": kept pages
    write_json(out_dir / "split.json", {"counts": counts, "documents": sides, "notes": notes})
    for note in notes:
        console.print(f"[yellow]note[/]: {note}")
    console.print("split: " + ", ".join(f"{s} {c['pages']} pages / {c['documents']} documents"
                                         for s, c in counts.items() if c["pages"]))
    return counts


def main(params: Params, console: Console) -> None:
    run(Path(params.paths.export_dir), Path(params.paths.split_dir), params.split, console)

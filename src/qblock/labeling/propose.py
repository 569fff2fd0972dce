"""`qblock propose`: the trained model cuts the app's unlabeled pages into questions.

For each page image with no groups file of a person's, it writes beside the app's own folders:

- `documents/{doc}/proposals/{page}_groups.json`: the app's groups schema (pixel `combinedBbox`
  of the displayed image, whole pixels) plus each group's `confidence`, and a `source` block
  (model, MLflow run, threshold, imgsz, ink snapping, runtime, time, the page's size and mtime);
- `documents/{doc}/proposals/problems/{page}_q{NN}.png`: the exact box pixels of each proposed
  question, in reading order (columns left to right, then top to bottom), as in the JSON.

Each box's edges are snapped onto the page's ink when evaluate found that this model's crops
improve with it on val (`quality/ink_snap.py`). A person's `groups/` and `problems/` are never
written. `export` reads `groups/` only, so a proposal is never a label until a person accepts it
(`--accept`). A re-run redoes only pages whose image, model, threshold, imgsz or snapping changed.

Which model and how it runs (the champion, a version, a file; its OpenVINO copy on a CPU) is
`labeling/model_choice.py`'s.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from rich.console import Console

from qblock.config.schema import Params
from qblock.core import files
from qblock.core.errors import UserError
from qblock.core.progress import track
from qblock.data.app_folder import AppFolder
from qblock.data.contact_sheet import PROPOSED, caption, draw_box, page_tile, save_contact_sheet
from qblock.data.page_image import as_page, page_limits, size_problem
from qblock.data.problems import write_json
from qblock.labeling.model_choice import ModelChoice, load_model
from qblock.quality.crop_page import crop_page
from qblock.quality.ink_snap import SnapRule

UNSURE = (0.2, 0.8)  # a box this unsure makes a page worth a person's time
Box = tuple[int, int, int, int]  # x0, y0, x1, y1: whole pixels of the displayed page


def reading_order(boxes: list[tuple[Box, float]]) -> list[tuple[Box, float]]:
    """Columns left to right (boxes overlapping horizontally by half the narrower one), each top to bottom."""
    columns: list[list[tuple[Box, float]]] = []
    spans: list[list[int]] = []
    for item in sorted(boxes, key=lambda b: (b[0][0], b[0][1])):
        (x0, _, x1, _), _ = item
        for column, span in zip(columns, spans, strict=True):
            overlap = min(x1, span[1]) - max(x0, span[0])
            if overlap > 0.5 * min(x1 - x0, span[1] - span[0]):
                column.append(item)
                span[0], span[1] = min(span[0], x0), max(span[1], x1)
                break
        else:
            columns.append([item])
            spans.append([x0, x1])
    ordered = sorted(zip(spans, columns, strict=True), key=lambda sc: sc[0][0])
    return [item for _, column in ordered for item in sorted(column, key=lambda b: (b[0][1], b[0][0]))]


def whole_pixels(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box:
    """A box rounded to whole pixels (as the app stores them) and kept on the page."""
    return (max(0, round(x0)), max(0, round(y0)), min(width, round(x1)), min(height, round(y1)))


@dataclass
class PageJob:
    document: str
    page: str
    image: Path
    proposal: Path
    stat: list[int]


@dataclass
class Outcome:
    proposed: int = 0
    unchanged: int = 0
    unreadable: list[str] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)


def documents_of(dataset_root: Path, named: list[str] | None) -> list[str]:
    """The documents ``named`` (all of them when none are), each checked to be one of the app's."""
    app = AppFolder(dataset_root)
    if not app.documents.is_dir():
        raise UserError(f"{dataset_root}: no documents/ folder; give the app's dataset_root")
    present = app.document_names()
    if not named:
        return present
    unknown = [name for name in named if name not in present]  # never a path: `..`, `a/b` are unknown
    if unknown:
        raise UserError(f"{app.documents}: no document(s) {', '.join(map(repr, unknown))}")
    return list(named)


def unlabeled_pages(app: AppFolder, document: str) -> list[PageJob]:
    """The page images of a document that have no groups file of a person's."""
    images = app.images(document)
    jobs = []
    for page in app.unlabeled(document, images):
        stat = images[page].stat()
        jobs.append(PageJob(document, page, images[page], app.proposal_file(document, page),
                            [stat.st_size, stat.st_mtime_ns]))
    return jobs


def _up_to_date(job: PageJob, settings: dict[str, Any]) -> bool:
    try:
        source = json.loads(job.proposal.read_text(encoding="utf-8"))["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return source.get("page_stat") == job.stat and all(source.get(k) == v for k, v in settings.items())


def _predict(model, page: Image.Image, conf: float, imgsz: int, device: str,
             snap: SnapRule | None) -> tuple[list[tuple[Box, float]], list[tuple[Box, float]]]:
    """All the boxes the model found down to the unsure level, and the crops at ``conf``, made as
    evaluate measured them (`quality/crop_page.py`)."""
    import numpy as np

    bgr = np.ascontiguousarray(np.asarray(page.convert("RGB"))[:, :, ::-1])
    result = model.predict(bgr, conf=min(conf, UNSURE[0]), imgsz=imgsz, device=device, verbose=False)[0]
    boxes = [((x0, y0, x1, y1), float(score))
             for (x0, y0, x1, y1), score in zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(), strict=True)]
    found, crops = crop_page(page, boxes, conf, snap)

    def whole(items) -> list[tuple[Box, float]]:
        boxes = [(whole_pixels(x0, y0, x1, y1, page.width, page.height), score) for (x0, y0, x1, y1), score in items]
        return [(box, score) for box, score in boxes if box[2] > box[0] and box[3] > box[1]]

    return whole((f.box, f.score) for f in found), whole(crops)


def _write_page(job: PageJob, page: Image.Image, boxes: list[tuple[Box, float]], unsure: int,
                source: dict[str, Any]) -> None:
    crops = job.proposal.parent / "problems"
    crops.mkdir(parents=True, exist_ok=True)
    groups = []
    for number, ((x0, y0, x1, y1), score) in enumerate(boxes, start=1):
        target = crops / f"{job.page}_q{number:02d}.png"
        with files.written(target) as tmp:
            page.crop((x0, y0, x1, y1)).save(tmp, format="PNG", compress_level=1)  # lossless; level 6: 1.5x the time
        groups.append({"combinedBbox": {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0},
                       "confidence": round(score, 4)})
    for stale in crops.glob(f"{job.page}_q*.png"):  # from an earlier proposal with more questions
        if stale.stem[len(job.page) + 2:].isdigit() and int(stale.stem[len(job.page) + 2:]) > len(boxes):
            stale.unlink()
    write_json(job.proposal, {"groups": groups, "unsure_boxes": unsure, "source": source})


def label_studio_task(job: PageJob, page: Image.Image, boxes: list[tuple[Box, float]], model: str,
                      class_name: str) -> dict[str, Any]:
    """The page as a Label Studio task with the proposals as pre-annotations (percent of the page)."""
    width, height = page.size
    results = [{
        "id": f"q{i:02d}", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
        "original_width": width, "original_height": height, "image_rotation": 0, "score": round(score, 4),
        "value": {"x": 100 * x0 / width, "y": 100 * y0 / height, "width": 100 * (x1 - x0) / width,
                  "height": 100 * (y1 - y0) / height, "rotation": 0, "rectanglelabels": [class_name]},
    } for i, ((x0, y0, x1, y1), score) in enumerate(boxes, start=1)]
    score = sum(s for _, s in boxes) / len(boxes) if boxes else 0.0
    return {"data": {"image": job.image.resolve().as_posix(), "document": job.document, "page": job.page},
            "predictions": [{"model_version": model, "score": round(score, 4), "result": results}]}


def propose(dataset_root: Path, documents: list[str] | None, choice: ModelChoice, conf: float, params: Params,
            console: Console, label_studio: bool = False) -> Outcome:
    """Propose for every unlabeled page; with ``label_studio``, also collect the pages as tasks."""
    from qblock.model.yolo_env import prepare_ultralytics

    app = AppFolder(dataset_root)
    jobs = [job for document in documents_of(dataset_root, documents) for job in unlabeled_pages(app, document)]
    if not jobs:  # nothing to propose: no model to load
        return Outcome()
    prepare_ultralytics(Path.cwd())
    model, imgsz, device, runtime = load_model(choice, params, Path.cwd(), console)
    settings = {"model": choice.identity, "conf_threshold": conf, "imgsz": imgsz, "ink_snap": choice.snap is not None}
    outcome = Outcome()
    for job in track(jobs, "propose"):
        if _up_to_date(job, settings):
            outcome.unchanged += 1
            continue
        try:
            with page_limits(), Image.open(job.image) as opened:
                if problem := size_problem(opened.size):
                    raise OSError(problem)
                page = as_page(ImageOps.exif_transpose(opened))  # transparent or 16-bit pages read as on paper
        except (UnidentifiedImageError, OSError) as exc:
            console.print(f"[yellow]warning[/]: {job.image}: cannot read the page image ({exc}); skipped")
            outcome.unreadable.append(str(job.image))
            continue
        found, crops = _predict(model, page, conf, imgsz, device, choice.snap)
        kept = reading_order(crops)
        unsure = sum(UNSURE[0] <= score <= UNSURE[1] for _, score in found)
        source = choice.source | settings | {"runtime": runtime, "page_stat": job.stat,
                                             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_page(job, page, kept, unsure, source)
        if label_studio:
            outcome.tasks.append(label_studio_task(job, page, kept, choice.identity, params.export.class_names[0]))
        outcome.proposed += 1
    return outcome


def accept(dataset_root: Path, target: str, console: Console) -> int:
    """Copy reviewed proposals (``DOC/PAGE``, or every proposal of ``DOC``) into the app's `groups/`,
    without the extra fields; refuse when a person's groups file is already there."""
    document, _, page = target.partition("/")
    (document,) = documents_of(dataset_root, [document])
    app = AppFolder(dataset_root)
    pages = [p for p in app.proposed(document) if not page or p == page]
    if not pages:
        raise UserError(f"{app.proposals_folder(document)}: no proposal for {target!r}; run `qblock propose` first")
    taken = [app.groups_file(document, p).name for p in pages if app.groups_file(document, p).exists()]
    if taken:
        raise UserError(f"{app.groups_folder(document)}: a person already labeled {', '.join(taken)}; nothing was "
                        "accepted (a proposal never overwrites a person's file)")
    for p in pages:
        groups = json.loads(app.proposal_file(document, p).read_text(encoding="utf-8"))["groups"]
        write_json(app.groups_file(document, p), {"groups": [{"combinedBbox": g["combinedBbox"]} for g in groups]})
    console.print(f"propose: accepted {len(pages)} page(s) of {document} into {app.groups_folder(document)}")
    return len(pages)


def draw_preview(dataset_root: Path, document_name: str, out: Path, count: int = 6) -> Path:
    """A picture of a document's proposed pages with their boxes and confidences."""
    (document,) = documents_of(dataset_root, [document_name])
    app = AppFolder(dataset_root)
    tiles = []
    for page_name in app.proposed(document)[:count]:
        proposal = app.proposal_file(document, page_name)
        image = app.page_image(document, page_name)
        if image is None:
            continue
        with Image.open(image) as opened:
            canvas, scale = page_tile(as_page(ImageOps.exif_transpose(opened)))
        draw = ImageDraw.Draw(canvas)
        groups = json.loads(proposal.read_text(encoding="utf-8"))["groups"]
        for number, group in enumerate(groups, start=1):
            b = group["combinedBbox"]
            box = (b["x"] * scale, b["y"] * scale, (b["x"] + b["width"]) * scale, (b["y"] + b["height"]) * scale)
            draw_box(draw, box, PROPOSED[number % 2], f"q{number:02d} {group['confidence']:.2f}")
        caption(draw, f"{document}/{page_name}: {len(groups)} proposed")
        tiles.append(canvas)
    if not tiles:
        raise UserError(f"{app.proposals_folder(document)}: no proposals to draw; run `qblock propose {document}` "
                        "first")
    save_contact_sheet(tiles, out)
    return out

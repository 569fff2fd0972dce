"""Benchmark: where the crop rate of new workbooks goes, for the models a train_quality run trained.

    python bench/crop_misses.py --work /tmp/tq                      # every run and seed in the folder
    python bench/crop_misses.py --work /tmp/tq --run cpu --picture misses.png

Reads a ``bench/train_quality.py --new SEED ... --work FOLDER`` folder (its models' predictions, its
val-chosen threshold and snapping) and prints, for val, the test split and each seed's new
workbooks, the crop rate three ways: at val's threshold (what a person gets), at the threshold best
for those very pages (what choosing on val costs), and per workbook (how far workbooks differ). Then
the questions missed, by kind: the last question of a column (a box with none below it: whether it
owns the blank space down to the column's end is the labeler's call) or another; and by the edge
that is furthest off (the bottom edge, further or shorter: the working space below a question;
another edge; no crop overlapping it by IoU 0.3). With ``--picture``, the new workbooks' pages
with the most misses, true boxes green (thick where missed) and crops red.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path


def places(work: Path, data: str, folder: Path, result: dict) -> dict[str, tuple[Path, str, Path]]:
    """Each place scored: its export and split folder, the split's side and the predictions' folder."""
    found = {"val": (work / data, "val", folder / "val")}
    if (folder / "test-split" / "predictions.json").is_file():
        found["test split"] = (work / data, "test", folder / "test-split")
    for label in result.get("new", {}):
        if label.startswith("seed"):
            seed = label.split()[1]
            found[f"new, seed {seed}"] = (work / f"{data}-new-{seed}", "val", folder / f"seed-{seed}")
    return found


def workbook_of(image: str) -> str:
    return Path(image).stem.rsplit("__page", 1)[0]


def column_last(truth: tuple, others: list) -> bool:
    """No other true box below it in its column."""
    from qblock.quality.spacing import box_below

    return box_below([truth, *others], 0, 0.0) is None


def kind_of_miss(truth: tuple, others: list, crops: list) -> str | None:
    """None when cropped at IoU >= 0.9; else what went wrong, as the module's docstring lists."""
    from qblock.quality.crops import CROP_IOU, iou

    best = max(crops, key=lambda c: iou(truth, c), default=None)
    overlap = iou(truth, best) if best is not None else 0.0
    if overlap >= CROP_IOU:
        return None
    where = "a column's last question" if column_last(truth, others) else "another question"
    if best is None or overlap < 0.3:
        return f"{where}: no crop"
    off = [abs(best[i] - truth[i]) for i in range(4)]
    edge = max(range(4), key=lambda i: off[i])
    if edge == 3:
        return f"{where}: bottom {'further' if best[3] > truth[3] else 'shorter'}"
    return f"{where}: {('left', 'top', 'right')[edge]} edge"


def report(work: Path, data: str, name: str, result: dict, picture: list) -> None:
    from train_quality import run_folder

    from qblock.data.yolo_folder import split_list
    from qblock.quality.crops import crop_metrics_at, load_val_pages, snap_pages
    from qblock.quality.ink_snap import learn_from_folder

    folder = run_folder(work, data, name, result["seed"])
    threshold = result["conf_threshold"]
    rule = learn_from_folder(work / data / "yolo", split_list(work / data / "split", "train") or []) \
        if result.get("snapped") else None
    print(f"\n{name}, seed {result['seed']}: val's threshold {threshold}, snapping {'on' if rule else 'off'}")
    for label, (pages_folder, side, predictions) in places(work, data, folder, result).items():
        pages = load_val_pages(pages_folder / "yolo", split_list(pages_folder / "split", side) or [],
                               predictions / "predictions.json")
        if rule is not None:
            pages = snap_pages(pages_folder / "yolo", pages, rule)
        at_val = crop_metrics_at(pages, threshold)["crop_rate"]
        best = max((crop_metrics_at(pages, t / 100)["crop_rate"], t / 100) for t in range(5, 95))
        workbooks = defaultdict(list)
        for page in pages:
            workbooks[workbook_of(page.image)].append(page)
        rates = sorted(crop_metrics_at(group, threshold)["crop_rate"] for group in workbooks.values())
        misses: Counter[str] = Counter()
        last: Counter[bool] = Counter()
        for page in pages:
            crops = page.crops(threshold)
            missed = 0
            for index, truth in enumerate(page.truth):
                others = page.truth[:index] + page.truth[index + 1:]
                kind = kind_of_miss(truth, others, crops)
                last[column_last(truth, others)] += 1
                if kind is not None:
                    misses[kind] += 1
                    missed += 1
            if label.startswith("new") and missed:
                picture.append((missed, pages_folder / "yolo" / page.image, page, crops))
        questions = sum(len(p.truth) for p in pages)
        print(f"  {label}: crop rate {at_val:.3f} at val's threshold, {best[0]:.3f} at its own best ({best[1]:.2f}); "
              f"{len(rates)} workbooks {rates[0]:.2f}-{rates[-1]:.2f} (median {statistics.median(rates):.2f}); "
              f"{questions} questions, {last[True]} of them a column's last")
        for kind, count in sorted(misses.items(), key=lambda kv: -kv[1]):
            print(f"    missed, {kind}: {count}")


def draw(picture: list, out: Path, pages: int = 3) -> None:
    from PIL import Image, ImageDraw

    shown, seen = [], set()
    for _, image, page, crops in sorted(picture, key=lambda p: -p[0]):
        if image in seen or len(shown) == pages:  # a page once, as the first model with most misses cut it
            continue
        seen.add(image)
        with Image.open(image) as opened:
            canvas = opened.convert("RGB")
        pen = ImageDraw.Draw(canvas)
        for truth in page.truth:
            pen.rectangle(truth, outline=(0, 170, 0), width=8 if kind_of_miss(truth, [], crops) else 3)
        for crop in crops:
            pen.rectangle(crop, outline=(220, 0, 0), width=3)
        canvas.thumbnail((900, 1300))
        shown.append(canvas)
    sheet = Image.new("RGB", (sum(s.width for s in shown), max(s.height for s in shown)), "white")
    x = 0
    for s in shown:
        sheet.paste(s, (x, 0))
        x += s.width
    sheet.save(out)
    print(f"\nthe new workbooks' {len(shown)} pages with the most misses: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a bench/train_quality.py --new ... --work folder")
    parser.add_argument("--run", action="append", help="only this run (repeat); default: every run in the folder")
    parser.add_argument("--picture", type=Path, help="also draw the new pages with the most misses into this PNG")
    args = parser.parse_args()
    results_files = sorted(args.work.glob("train_quality_*.json"))
    if not results_files:
        parser.error(f"{args.work}: no train_quality_*.json; give the --work folder of a train_quality run")
    picture: list = []
    for results_file in results_files:
        data = results_file.stem.removeprefix("train_quality_")
        for name, seeds in json.loads(results_file.read_text(encoding="utf-8")).items():
            if args.run and name not in args.run:
                continue
            for result in seeds:
                report(args.work.resolve(), data, name, result, picture)
    if args.picture and picture:
        draw(picture, args.picture)


if __name__ == "__main__":
    main()

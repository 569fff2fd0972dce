"""The benchmarks page's tables, made from the benches' own result files (`bench/results/*.json`).

    python bench/render.py           # rewrites the tables in docs/*.md (make bench-tables)
    python bench/render.py --check   # exits 1 when a page is not what the result files say

A result file is what a bench wrote with `--save NAME`: the command that made it, the commit, the
machine, the date, and the bench's own figures. Each table lives between `<!-- results:KIND -->` and
`<!-- /results:KIND -->` in a page of docs/ (benchmarks.md, pretraining.md); the text around it is
written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs"


def spread(values: list[float], digits: int = 3) -> str:
    """The median, and the range when the values differ: '0.877 (0.723-0.885)'."""
    if not values:
        return "-"
    middle = statistics.median(values)
    if max(values) - min(values) < 0.5 * 10 ** -digits:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def settle(epochs: list[dict]) -> float:
    """How far the last 10 epochs' val mAP50 fell below the best epoch's: 0 is a training that stays put."""
    values = [e["mAP50"] for e in epochs]
    return max(values) - min(values[-10:]) if values else 0.0


def train_quality_rows(result: dict) -> list[str]:
    rows = []
    for name, seeds in result["figures"].items():
        new = [r["new"][label]["crop_rate"] for r in seeds for label in r.get("new", {}) if label.startswith("seed")]
        new_map = [r["new"][label]["mAP50"] for r in seeds for label in r.get("new", {}) if label.startswith("seed")]
        test = [r["new"]["test split"]["crop_rate"] for r in seeds if "test split" in r.get("new", {})]
        label = f"`{name}`" + (f", {result['note']}" if result.get("note") else "")
        rows.append(" | ".join([
            label, result.get("collection", ""), str(len(seeds)),
            spread([r["crop_rate"] for r in seeds]), spread(test), spread(new), spread([r["mAP50"] for r in seeds]),
            spread(new_map), spread([settle(r["epochs"]) for r in seeds], 2),
            f"{statistics.median(r['seconds'] for r in seeds):.0f} s",
        ]))
    return rows


def train_quality_table(results: list[dict]) -> str:
    lines = ["| run | trained on | seeds | val crop rate | test split crop rate | new workbooks crop rate | "
             "val mAP50 | new workbooks mAP50 | last 10 epochs below best (mAP50) | training |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        lines += [f"| {row} |" for row in train_quality_rows(result)]
    lines.append("")
    for result in results:
        lines.append(f"- {result.get('collection', '')}, {result.get('note', '')}: `{result['command']}`, commit "
                     f"`{result['commit'][:7]}`, {result['machine']}, {result['date']}")
    return "\n".join(lines)


def learning_curve_table(results: list[dict]) -> str:
    """One row per style and labeled-page count; a column group per start (scratch, base, coco)."""
    starts = [s for s in ("scratch", "base", "coco") if any(k.endswith(f" {s}") for r in results for k in r["figures"])]
    lines = ["| style | labeled pages | " + " | ".join(f"{s}: test crop rate | {s}: mAP50 | {s}: mAP50-95"
                                                     for s in starts) + " | seeds | training (min) |",
             "| --- | --- | " + " | ".join("--- | --- | ---" for _ in starts) + " | --- | --- |"]
    for result in results:
        counts = sorted({int(k.split()[0]) for k in result["figures"]})
        for n in counts:
            cells, seeds, minutes = [], [], []
            for start in starts:
                runs = result["figures"].get(f"{n} {start}", [])
                cells += [spread([r[k] for r in runs]) for k in ("crop_rate", "mAP50", "mAP50-95")]
                seeds += [len(runs)] if runs else []
                minutes += [r["seconds"] / 60 for r in runs]
            name = result.get("label", result["style"])
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + f" | {max(seeds, default=0)} | "
                         + (f"{statistics.median(minutes):.1f}" if any(minutes) else "-") + " |")
    lines.append("")
    for result in results:
        name = result.get("label", result["style"])
        lines.append(f"- {name} ({result['collection']}): `{result['command']}`, commit "
                     f"`{result['commit'][:7]}`, {result['machine']}, {result['date']}")
    return "\n".join(lines)


def learning_curve_new_table(results: list[dict]) -> str:
    """The learning curves' runs scored on new workbooks too (``--new``): val, where the epoch and threshold are
    chosen, beside the test split and the new workbooks (every draw and training seed), per start."""
    lines = ["| style | labeled pages | start | val crop rate | test split crop rate | new workbooks crop rate | "
             "new minus val | seeds | new workbooks |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    named = []
    for result in results:
        for key, runs in sorted(result["figures"].items(), key=lambda item: (int(item[0].split()[0]), item[0])):
            if not runs or not all(r.get("new") and "val_crop_rate" in r for r in runs):
                continue
            n, start = key.split()[:2]
            val = statistics.median(r["val_crop_rate"] for r in runs)
            new = [v["crop_rate"] for r in runs for v in r["new"].values()]
            draws = ", ".join(runs[0]["new"])
            name = result.get("label", result["style"])
            lines.append(f"| {name} | {n} | {start} | {spread([r['val_crop_rate'] for r in runs])}"
                         f" | {spread([r['crop_rate'] for r in runs])} | {spread(new)} | "
                         f"{statistics.median(new) - val:+.3f} | {len(runs)} | {draws} |")
            named.append(result)
    lines.append("")
    for result in {id(r): r for r in named}.values():
        lines.append(f"- {result.get('label', result['style'])}: `{result['command']}`, commit "
                     f"`{result['commit'][:7]}`, {result['machine']}, {result['date']}")
    return "\n".join(lines)


def big_pages_table(results: list[dict]) -> str:
    """One row per page size: seconds a page for each import run, and export's seconds a megabyte."""
    lines = ["| pages | megapixels | MB a page | import, s a page | dry run, s | unchanged re-import, s | "
             "export, s | export, s a MB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        for row in result["rows"].values():
            lines.append(f"| {row['pages']} | {row['megapixels']} | {row['megabytes'] / row['pages']:.2f} | "
                         f"{row['import_s'] / row['pages']:.2f} | {row['dry_run_s']:.1f} | {row['unchanged_s']:.1f} | "
                         f"{row['export_s']:.1f} | {row['export_s'] / row['megabytes']:.3f} |")
    lines.append("")
    lines += [f"- `{r['command']}`, commit `{r['commit'][:7]}`, {r['machine']}, {r['date']}" for r in results]
    return "\n".join(lines)


# the marker's name in the docs -> (the bench whose result files it shows, the table)
TABLES = {"train_quality": ("train_quality", train_quality_table),
          "learning_curve": ("learning_curve", learning_curve_table),
          "learning_curve_new": ("learning_curve", learning_curve_new_table),
          "big_pages": ("big_pages", big_pages_table)}


def rendered(page: str) -> str:
    results = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(RESULTS.glob("*.json"))]
    for kind, (bench, table) in TABLES.items():
        mine = [r for r in results if r.get("bench") == bench]
        pattern = re.compile(rf"(<!-- results:{kind} -->).*?(<!-- /results:{kind} -->)", re.S)
        page = pattern.sub(lambda m, mine=mine, table=table: f"{m[1]}\n{table(mine)}\n{m[2]}", page)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the page is up to date")
    args = parser.parse_args()
    stale = []
    for path in sorted(DOCS.glob("*.md")):
        page = path.read_text(encoding="utf-8")
        new = rendered(page)
        if new == page:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(new, encoding="utf-8")
            print(f"{path}: tables written from {len(list(RESULTS.glob('*.json')))} result file(s)")
    if args.check and stale:
        print(f"{', '.join(map(str, stale))}: tables differ from bench/results/; run `make bench-tables`")
        sys.exit(1)
    if args.check:
        print(f"{DOCS}: every table is up to date")


if __name__ == "__main__":
    main()

"""What makes an exported label file wrong for training: rows that ultralytics would drop or
misread (bad fields, boxes off the page, duplicates) are errors naming the line; a box inside
another of its class is a warning (nested classes mapped onto one)."""

from __future__ import annotations

from pathlib import Path

from qblock.data.labels import LabelRow, parse_fields
from qblock.data.problems import ProblemLog


def check_labels(path: Path, class_count: int, log: ProblemLog) -> str | None:
    """The label file's rows as text when every row is valid and distinct, else None (errors logged)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        log.error(path, f"cannot read the label file: {exc}")
        return None
    rows: list[str] = []
    seen: dict[tuple, int] = {}
    placed: list[tuple[int, LabelRow]] = []
    ok = True
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            row = parse_fields(fields, class_count)
        except ValueError as exc:
            log.error(path, f"line {number}: {exc}: {line.strip()!r}")
            ok = False
            continue
        key = (row.cls, row.x, row.y, row.w, row.h)  # ultralytics drops exact duplicates
        if key in seen:
            log.error(path, f"line {number} duplicates line {seen[key]}")
            ok = False
            continue
        seen[key] = number
        rows.append(" ".join(fields))
        placed.append((number, row))
    for inner, outer in nested(placed):
        log.warning(path, f"line {inner} lies inside line {outer}, of the same class: nested classes mapped onto "
                          "one (export.class_map)? A question block holds no other")
    return "".join(row + "\n" for row in rows) if ok else None


def nested(rows: list[tuple[int, LabelRow]], slack: float = 0.005) -> list[tuple[int, int]]:
    """(inner, outer) line numbers of boxes lying inside a larger box of their class on one page, give or take
    ``slack`` of the page: corners compared, largest first (a few microseconds a page at 100,000 pages)."""
    if len(rows) < 2:
        return []
    boxes = sorted(((row.w * row.h, row.cls, row.x - row.w / 2 + slack, row.y - row.h / 2 + slack,
                     row.x + row.w / 2 - slack, row.y + row.h / 2 - slack, number) for number, row in rows),
                   reverse=True)
    found = []
    for i, (_, cls, x0, y0, x1, y1, number) in enumerate(boxes):
        for _, other_cls, ox0, oy0, ox1, oy1, other in boxes[:i]:
            if other_cls == cls and ox0 - 2 * slack <= x0 and oy0 - 2 * slack <= y0 and x1 <= ox1 + 2 * slack \
                    and y1 <= oy1 + 2 * slack:
                found.append((number, other))
                break
    return sorted(found)

"""Problems found in the data, each naming its file; errors stop a stage, warnings do not."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
from rich.console import Console
from rich.markup import escape

from qblock.core import files
from qblock.core.errors import StageFailed


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    severity: str  # "error" or "warning"

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}"


@dataclass
class ProblemLog:
    """Collects problems so a stage can report all of them, not just the first."""

    problems: list[Problem] = field(default_factory=list)

    def error(self, file: str | Path, message: str) -> None:
        self.problems.append(Problem(str(file), message, "error"))

    def warning(self, file: str | Path, message: str) -> None:
        self.problems.append(Problem(str(file), message, "warning"))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def as_json(self) -> list[dict]:
        return [asdict(p) for p in self.problems]

    def report(self, console: Console, stage: str, limit: int = 30) -> None:
        """Print the problems, errors first, and raise StageFailed if there are errors."""
        ordered = self.errors + self.warnings
        for problem in ordered[:limit]:
            style = "red" if problem.severity == "error" else "yellow"
            console.print(f"[{style}]{problem.severity}[/]: {escape(one_line(problem.file))}: "
                          f"{escape(one_line(problem.message))}", highlight=False)
        if len(ordered) > limit:
            console.print(f"... and {len(ordered) - limit} more (all of them are in the report file)")
        if self.errors:
            raise StageFailed(
                f"{stage}: {len(self.errors)} error(s), {len(self.warnings)} warning(s); fix the files named above"
            )


def one_line(text: str) -> str:
    """``text`` with its line breaks and other control characters written out (``\\n``): a problem stays
    one `error:` line, which publish and desktop-run relay whole, however a document id was typed."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def write_json(path: Path, data: object, compact: bool = False) -> None:
    """Write JSON atomically (a crash leaves the old file, never half a new one)."""
    if compact:  # orjson writes the same bytes as json.dumps(separators=(",", ":")), 7x faster (100,000 pages)
        files.write_bytes(path, orjson.dumps(data) + b"\n")
    else:
        files.write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")

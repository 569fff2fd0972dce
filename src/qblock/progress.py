"""Progress bars for long loops: shown on a terminal, silent in logs and tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from qblock.console import console

T = TypeVar("T")


def track(items: Sequence[T], description: str) -> Iterable[T]:
    """Iterate ``items`` with a progress bar when the console is a terminal."""
    if not console.is_terminal or len(items) < 50:
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield from progress.track(items, total=len(items), description=description)

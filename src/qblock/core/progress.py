"""Progress bars for long loops (shown on a terminal, silent in logs and tests), and a
process pool for loops long enough to be worth every core."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from qblock.core.console import console

T = TypeVar("T")
R = TypeVar("R")

# Below this many items a loop stays in-process: starting workers (an import of qblock each,
# about a second on Windows) would cost more than it saves.
PARALLEL_MIN_ITEMS = 1000


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """Iterate ``items`` with a progress bar when the console is a terminal."""
    total = len(items) if total is None and isinstance(items, Sequence) else total
    if not console.is_terminal or (total or 0) < 50:
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield from progress.track(items, total=total, description=description)


def worker_count() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def map_pages(func: Callable[[T], R], items: Sequence[T], description: str) -> list[R]:
    """``[func(item) for item in items]``, on every core when there are many items.

    ``func`` must be a module-level function (it is pickled to the worker processes), and the
    results come back in the order of ``items``.
    """
    workers = worker_count()
    if workers == 1 or len(items) < PARALLEL_MIN_ITEMS:
        return [func(item) for item in track(items, description)]
    chunk = max(1, len(items) // (workers * 16))
    with ProcessPoolExecutor(max_workers=workers, initializer=gc.enable) as pool:  # a forked worker inherits
        # a paused collector (core/collector.py); its pages' images and errors may well form cycles
        return list(track(pool.map(func, items, chunksize=chunk), description, total=len(items)))

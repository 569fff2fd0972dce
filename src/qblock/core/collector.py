"""Python's cycle collector, paused while a stage does bookkeeping over every page.

A re-run over 100,000 pages makes a few million small lists, tuples and strings that never form a
cycle (listings, stats, names), and keeps most of them: each of the collector's passes over them,
every few hundred allocations, found nothing to free, and cost 0.1-0.2 s a stage (a third of the
split stage's re-run). Reference counting still frees everything as usual; only cycles wait until
the block ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """Run the block with the cycle collector off (as it was, after): for loops that allocate and keep many
    small objects and form no cycles. Worker processes started inside turn it back on (progress.map_pages)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()

"""What training prints: one progress bar (or, in a log, a line every tenth of the epochs) in
qblock's words; ultralytics' own lines, tables and bars go to a file beside the run.

ultralytics prints a table row and a progress bar for every epoch and every val pass: hundreds of
lines a training, between which qblock's own lines are lost. Here its logger writes to
``ultralytics.log`` in the run's folder instead, and its bars are off while it trains.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

LOG_NAME = "ultralytics.log"


@contextmanager
def ultralytics_to_file(log_file: Path) -> Iterator[Path]:
    """ultralytics' log lines into ``log_file`` (appended: a resumed training continues it), its progress
    bars off; both as they were afterwards."""
    import ultralytics.utils as ultralytics_utils

    logger = logging.getLogger("ultralytics")
    kept, verbose = list(logger.handlers), ultralytics_utils.VERBOSE
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers = [handler]
    ultralytics_utils.VERBOSE = False  # its bars ask this when they start: off
    try:
        yield log_file
    finally:
        logger.handlers = kept
        handler.close()
        ultralytics_utils.VERBOSE = verbose


class EpochReporter:
    """An ultralytics callback (on_fit_epoch_end) that shows each epoch in one bar on a terminal, and a
    line every tenth of the training elsewhere (a log, `dvc repro` piped)."""

    def __init__(self, console: Console, epochs: int, first: int = 1) -> None:
        self.console, self.epochs, self.first = console, epochs, first
        self.every = max(1, epochs // 10)
        self.started = time.monotonic()
        self.best = 0.0
        self.progress: Progress | None = None
        if console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=console, transient=True)
            self.task = self.progress.add_task("train: epoch", total=epochs, completed=first - 1)
            self.progress.start()

    def __call__(self, trainer: Any) -> None:
        epoch = trainer.epoch + 1
        if epoch > self.epochs:  # ultralytics' final val of best.pt
            return
        map50 = float((trainer.metrics or {}).get("metrics/mAP50(B)", 0.0))
        self.best = max(self.best, map50)
        said = f"val mAP50 {map50:.3f} (best {self.best:.3f})"
        if self.progress is not None:
            self.progress.update(self.task, completed=epoch, description=f"train: {said}, epoch")
        elif epoch % self.every == 0 or epoch in (self.first, self.epochs):
            minutes = (time.monotonic() - self.started) / 60
            self.console.print(f"train: epoch {epoch}/{self.epochs}, {said}, {minutes:.1f} min")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

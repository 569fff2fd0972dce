"""Training checkpoints that a power cut cannot leave half-written.

ultralytics writes `last.pt` (and `best.pt`) in place at each epoch's end. A kill in the middle of
that write leaves a file torch cannot read, and the training it was meant to save could not be
resumed. Here each checkpoint is written beside its target first, flushed to the disk, and then
renamed over it: the target holds the previous epoch or this one, never part of one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

PART = ".part"


def _part(target: Path) -> Path:
    return target.with_name(target.name + PART)


def _flush(path: Path) -> None:
    with open(path, "r+b") as handle:  # Windows flushes only a handle open for writing
        os.fsync(handle.fileno())


def _rename_over(source: Path, target: Path, tries: int = 20) -> None:
    """os.replace, retried a moment while Windows holds the target open (a virus scanner, an indexer)."""
    for attempt in range(tries):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == tries - 1:
                raise
            time.sleep(0.1)


def whole_file_saves(trainer_class: Any) -> type:
    """A subclass of an ultralytics trainer whose `save_model` replaces each checkpoint whole."""

    class WholeFileSaves(trainer_class):
        best: Path
        last: Path

        def save_model(self):
            targets = {"best": Path(self.best), "last": Path(self.last)}  # best first: a cut leaves no best lost
            for target in targets.values():
                _part(target).unlink(missing_ok=True)  # a cut-off write of an earlier run
            self.best, self.last = _part(targets["best"]), _part(targets["last"])
            try:
                saved = super().save_model()
            finally:
                self.best, self.last = targets["best"], targets["last"]
            for target in targets.values():
                if _part(target).is_file():
                    _flush(_part(target))
                    _rename_over(_part(target), target)
            return saved

    WholeFileSaves.__name__ = WholeFileSaves.__qualname__ = f"WholeFileSaves{trainer_class.__name__}"
    return WholeFileSaves


def trainer_for(model, device: str) -> type | None:
    """The trainer class to pass as ``model.train(trainer=...)``: the task's own, saving whole files.

    None (ultralytics' own) on several GPUs: its DDP workers import the trainer class by name, which
    a class made here at run time does not have.
    """
    if "," in device:
        return None
    return whole_file_saves(model.task_map[model.task]["trainer"])


def epochs_done(checkpoint: Path) -> int | None:
    """How many epochs a resumable checkpoint holds, or None when it cannot be resumed from.

    None for a file torch cannot read (written by a version before whole-file saves and cut off,
    or damaged on disk) and for a finished training's stripped weights (no optimizer state).
    """
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception:  # torch raises RuntimeError, EOFError, UnpicklingError... for a damaged file
        return None
    if not isinstance(state, dict) or state.get("optimizer") is None:
        return None
    epoch = state.get("epoch")
    return int(epoch) + 1 if isinstance(epoch, int) and epoch >= 0 else None

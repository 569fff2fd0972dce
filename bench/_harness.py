"""What every benchmark needs: a folder to work in, and the wall time of a command."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def work_folder(given: Path | None, prefix: str) -> Iterator[Path]:
    """``given`` (created if needed, kept), or a temporary folder removed at the end, even on failure.

    The benchmarks write from hundreds of MB to GB (10,000 pages, DVC caches, remotes, models).
    """
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    try:
        yield folder
    finally:
        if Path.cwd().is_relative_to(folder):  # a benchmark that worked inside it (Windows cannot remove the cwd)
            os.chdir(folder.parent)
        shutil.rmtree(folder, ignore_errors=True)


def timed(args: list[str], cwd: Path) -> float:
    """Seconds a command takes; its output is dropped, except what it says when it fails."""
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return took


def project_params(*overrides: str):
    """The project's conf/ composed (with Hydra overrides) and checked, as the stages get it."""
    from qblock.config.compose import compose_params
    from qblock.config.schema import parse_params

    return parse_params(compose_params(Path(__file__).resolve().parents[1], list(overrides)), "conf/")

"""The code a stage runs: its import closure within qblock, and a digest of it.

A stage's caches (export's carried-over documents, validate's per-document checks) are keyed by
this digest as well as by their params and files, so new code (an upgrade, an edited rule) starts
them over instead of passing off what the old code wrote as today's. `tests/test_structure.py`
checks with the same closure that each stage's dvc.yaml deps cover the code it runs.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]  # the folder holding the qblock package


def module_file(name: str) -> Path | None:
    """The file of a qblock module (a package's __init__.py), or None when there is none."""
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, name: str) -> set[str]:
    """Every qblock module that ``path`` (module ``name``) imports, at the top or inside a function.

    The stage runner's one dynamic import (the stage module by name) is the start of each closure.
    """
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 folders
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from qblock.model import tracking`
    result = set()
    for module in found:
        parts = module.split(".")
        if parts[0] != "qblock":
            continue
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            if module_file(".".join(parts[:i])):
                result.add(".".join(parts[:i]))
    return result


def closure(start: str) -> set[Path]:
    """The files of ``start`` and of every qblock module it imports, directly or not."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            raise ValueError(f"no qblock module {name!r} under {SRC}")
        todo.extend(imported_modules(path, name) - seen)
    return {path for name in seen if (path := module_file(name)) is not None}


@cache
def code_digest(stage_module: str) -> str:
    """A digest of the code a stage runs: its module's closure and the stage runner's, file names and bytes."""
    digest = hashlib.sha256()
    for path in sorted(closure(stage_module) | closure("qblock.stages")):
        digest.update(path.relative_to(SRC).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]

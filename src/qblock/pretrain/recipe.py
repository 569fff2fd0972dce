"""``pretrain/recipe.yaml``: what the base model's pages are (the rest is the usual params.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from qblock.config.schema import read_yaml
from qblock.core.errors import UserError

RECIPE_FILE = "recipe.yaml"


@dataclass(frozen=True)
class HilexParams:
    source: str  # where the repository is cloned from (QBLOCK_HILEX_SOURCE overrides: a mirror)
    commit: str  # the pinned commit: what the pages are
    folder: str  # the YOLO export inside it
    page_aspect: float  # height / width the 640x640 pages are stretched back to


@dataclass(frozen=True)
class PagesParams:
    max_per_document: int  # pages kept of each exam paper (by a stable hash), so no paper dominates
    demo_documents: int  # demo workbooks added, each in its own drawn style
    demo_pages: int  # pages per demo workbook
    demo_seed: int  # not the demo's own seed (0) nor the benches' new-workbook seeds
    demo_labelers: int  # people the demo workbooks are split among (each draws its own margin)


@dataclass(frozen=True)
class Recipe:
    hilex: HilexParams
    pages: PagesParams


_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float)}


def _section(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping")
    names = {f.name: f.type for f in fields(kind)}
    unknown, missing = sorted(set(data) - set(names)), sorted(set(names) - set(data))
    if unknown or missing:
        raise UserError(f"{where}: " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"missing key(s) {', '.join(missing)}"] if missing else [])))
    for name, kind_name in names.items():
        want = _TYPES[str(kind_name)]
        if not isinstance(data[name], want) or isinstance(data[name], bool):
            raise UserError(f"{where}.{name}: {data[name]!r} is not a {kind_name}")
    return kind(**data)


def load_recipe(root: Path | None = None) -> Recipe:
    path = (root or Path.cwd()) / RECIPE_FILE
    if not path.is_file():
        raise UserError(f"{path}: not found; the base-model commands run in pretrain/ (`cd pretrain`)")
    data = read_yaml(path)
    return Recipe(_section(HilexParams, data.get("hilex"), f"{path.name}: hilex"),
                  _section(PagesParams, data.get("pages"), f"{path.name}: pages"))

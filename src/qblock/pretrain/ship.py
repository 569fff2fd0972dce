"""The recipe's model into the main project's ``weights/``, with where it came from beside it.

``weights/qblock-base-<model>.pt`` is what ``model.weights: auto`` starts from when no COCO weights
are there. Its JSON says which recipe run made it: the MD5 that ``pretrain/dvc.lock`` records for
the trained model (a test holds the two equal), the HiLEx commit, the data hash, the MLflow run and
the held-out figures.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from qblock.config.schema import Params
from qblock.core.errors import UserError
from qblock.pretrain.recipe import Recipe
from qblock.stages.train import BASE_PREFIX

KEPT_METRICS = ("test_crop_rate", "test_mAP50", "test_mAP50-95", "test_pages", "crop_rate", "mAP50", "mAP50-95",
                "conf_threshold")


def base_file(weights_dir: Path, model: str) -> Path:
    return weights_dir / f"{BASE_PREFIX}{model}.pt"


def locked_md5(lock_file: Path, output: str) -> str:
    """The MD5 ``dvc.lock`` records for ``output`` (a stage's out), or a clear error."""
    try:
        lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise UserError(f"{lock_file}: not found; run `dvc repro` in pretrain/ first") from None
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == output:
                return str(out["md5"])
    raise UserError(f"{lock_file}: no stage has {output} among its outputs; run `dvc repro` in pretrain/ first")


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 (DVC's own content hash, not security)


def provenance(params: Params, recipe: Recipe, md5: str) -> dict[str, Any]:
    run = json.loads((Path(params.paths.model_dir) / "run.json").read_text(encoding="utf-8"))
    metrics = json.loads(Path(params.paths.metrics_file).read_text(encoding="utf-8"))
    return {
        "model": params.model.name, "md5": md5, "recipe": "pretrain/dvc.yaml (its dvc.lock holds this md5)",
        "hilex": {"repository": recipe.hilex.source, "commit": recipe.hilex.commit, "licence": "CC BY 4.0"},
        "pages": {"max_per_document": recipe.pages.max_per_document, "demo_documents": recipe.pages.demo_documents},
        "train": {"preset": params.train.preset, "epochs": params.train.epochs, "imgsz": params.train.imgsz},
        "mlflow_run": run.get("run_id"), "pages_md5": locked_md5(Path("dvc.lock"), params.paths.dataset_root),
        "metrics": {k: metrics[k] for k in KEPT_METRICS if k in metrics},
    }


def ship(params: Params, recipe: Recipe, weights_dir: Path, console: Console) -> Path:
    """Copy the trained model to ``weights_dir`` if it is what ``dvc.lock`` says the recipe made."""
    model = Path(params.paths.model_dir) / "best.pt"
    if not model.is_file():
        raise UserError(f"{model}: not found; run `dvc repro` (or `dvc pull`) in pretrain/ first")
    md5 = md5_of(model)
    if md5 != (locked := locked_md5(Path("dvc.lock"), model.as_posix())):
        raise UserError(f"{model} (md5 {md5}) is not what dvc.lock records ({locked}): run `dvc repro` or "
                        f"`dvc checkout` in pretrain/ so the shipped file is the recipe's")
    target = base_file(weights_dir, params.model.name)
    weights_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, target)
    target.with_suffix(".json").write_text(json.dumps(provenance(params, recipe, md5), indent=1) + "\n",
                                           encoding="utf-8")
    console.print(f"ship: {target} ({target.stat().st_size / 1e6:.1f} MB, md5 {md5[:12]}); commit it with "
                  f"{target.with_suffix('.json').name} and pretrain/dvc.lock")
    return target

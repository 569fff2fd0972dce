"""Stage `check_params`: params.yaml must match conf/, and the labeled pages must be here.

It runs first, so `dvc repro` stops with the command to run instead of training on stale
parameters or failing deep inside export on a folder that was never pulled.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from qblock.config.compose import check_params_in_sync, in_dvc_experiment
from qblock.config.schema import load_params
from qblock.core.errors import UserError
from qblock.data.app_dataset import check_pages_present


def run(root: Path, console: Console, stamp: Path | None = None) -> None:
    loaded = load_params(root)  # the schema check applies everywhere
    differences = check_params_in_sync(root)
    if differences and in_dvc_experiment():
        console.print("params: experiment overrides (composed by `dvc exp run -S`): " + "; ".join(differences))
    elif differences:
        shown = "\n  ".join(differences)
        raise UserError(
            f"params.yaml does not match conf/:\n  {shown}\n"
            "Run `qblock params` to rebuild params.yaml from conf/ (make lasting changes in conf/), "
            "or try a variant with `dvc exp run -S key=value`."
        )
    else:
        console.print("params: params.yaml matches conf/")
    check_pages_present(root, root / loaded.paths.dataset_root)
    if stamp:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text("params.yaml matches conf/\n", encoding="utf-8")

"""The pipeline's stages, one module per `dvc.yaml` stage, each with a ``main(params, console)``.

``run_stage`` is what `qblock <stage>` calls: it loads the checked params, runs the stage and,
when it fails, sends the failure to the webhook before the CLI prints it.
"""

from __future__ import annotations

import importlib

from rich.console import Console

STAGES = ("export", "split", "validate", "train", "evaluate")


def run_stage(name: str, console: Console) -> None:
    from qblock.config.schema import load_params
    from qblock.core import notify

    params = load_params()
    module = importlib.import_module(f"qblock.stages.{name}")
    try:
        module.main(params, console)
    except (Exception, KeyboardInterrupt) as exc:
        notify.stage_failed(params.notify, name, str(exc) or type(exc).__name__, console)
        raise

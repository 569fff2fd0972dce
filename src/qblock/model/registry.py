"""The model registry: each evaluated model registered as a pyfunc version (with the threshold and
the ink-snapping rule evaluate chose), the `champion` alias and the decision behind it, and the
weights of a registered version for proposals."""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qblock.config.schema import MlflowParams
from qblock.model.champion import CHAMPION, REGISTERED_MODEL, Champion, Decision
from qblock.model.mlflow_store import quiet_mlflow, store_exists, tracking_uri
from qblock.model.run_log import download_model, installed_version


def _pins(*packages: str) -> list[str]:
    """``package==version`` for what is installed here (the bare name otherwise)."""
    return [f"{package}=={v}" if (v := installed_version(package)) else package for package in packages]


def register(model_file: Path, imgsz: int, conf: float, ink_snap: str | None = None) -> str:
    """Log the weights as a pyfunc model in the active run and register it; return the version.

    ``conf`` is the confidence threshold chosen on val: the model's default for proposals;
    ``ink_snap`` the edge-snapping rule evaluate kept (JSON), if any: propose applies it.
    """
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "image")]),
        outputs=Schema([ColSpec("string", "image"), ColSpec("string", "class"), ColSpec("double", "confidence"),
                        ColSpec("double", "x"), ColSpec("double", "y"), ColSpec("double", "width"),
                        ColSpec("double", "height")]),
        params=ParamSchema([ParamSpec("conf", "double", conf), ParamSpec("device", "string", "")]),
    )
    said = io.StringIO()  # MLflow's "Successfully registered model ... Created version N": evaluate says it
    with warnings.catch_warnings(), contextlib.redirect_stderr(said):  # no input example (it would load the
        warnings.simplefilter("ignore", UserWarning)  # model at log time), no type hints
        info = mlflow.pyfunc.log_model(
            name="detector",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"weights": str(model_file)},
            model_config={"imgsz": imgsz, "conf": conf},
            signature=signature,
            pip_requirements=_pins("ultralytics", "torch", "torchvision", "pandas", "pillow", "mlflow"),
            registered_model_name=REGISTERED_MODEL,
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(REGISTERED_MODEL, version, "qblock.conf_threshold", str(conf))
    client.set_model_version_tag(REGISTERED_MODEL, version, "qblock.ink_snap", ink_snap or "off")
    return version


def current_champion() -> Champion | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException:
        return None
    run = client.get_run(version.run_id)
    return Champion(str(version.version), version.run_id, run.data.tags.get("qblock.val_hash"), run.data.metrics)


def record_decision(decision: Decision, headline: str, metrics: dict[str, float]) -> None:
    """Move the alias when promoted; write the decision on the version, the active run and its JSON.

    ``headline`` (the metrics and the decision in one line) becomes the run's description and the
    version's, and the version carries the metrics as tags: the Models page answers "which version
    is the champion and why" without opening runs.
    """
    import mlflow

    client = mlflow.MlflowClient()
    if decision.promoted:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, decision.version)
    tags = {"champion.decision": "promoted" if decision.promoted else "not promoted",
            "champion.reason": decision.reason}
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, decision.version, key, value)
    for name, number in metrics.items():
        client.set_model_version_tag(REGISTERED_MODEL, decision.version, f"metric.{name}", f"{number:g}")
    client.update_model_version(REGISTERED_MODEL, decision.version, description=headline)
    mlflow.set_tags(tags | {"mlflow.note.content": headline})
    mlflow.log_dict(asdict(decision), "champion_decision.json")


def registered_weights(params: MlflowParams, folder: Path, version: str | None = None,
                       run_id: str | None = None) -> tuple[Path, dict[str, Any]] | None:
    """A registered model's weights (the champion, a ``version``, or a ``run_id``'s), downloaded into
    ``folder`` once, and where they came from; None when the store has no such model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not store_exists(params):
        return None
    quiet_mlflow()
    mlflow.set_tracking_uri(tracking_uri(params))
    client = mlflow.MlflowClient()
    source: dict[str, Any] = {}
    try:
        if run_id is None:
            found = client.get_model_version(REGISTERED_MODEL, version) if version else \
                client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
            run_id = found.run_id
            source = {"registered_model": REGISTERED_MODEL, "version": str(found.version),
                      "conf_threshold": found.tags.get("qblock.conf_threshold"),
                      "ink_snap": found.tags.get("qblock.ink_snap")}
        client.get_run(run_id)
    except MlflowException:
        return None
    target = folder / run_id / "best.pt"
    if not target.is_file():
        download_model(run_id, target.parent)
    return target, source | {"mlflow_run_id": run_id}

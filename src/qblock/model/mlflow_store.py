"""Where MLflow keeps runs and models: the configured store, as an absolute location, and the
experiment in it. MLflow is spoken to from this module, `run_log.py` (the pipeline's run) and
`registry.py` (the registered model) only; `pyfunc_model.py` is the model MLflow loads, not a caller.

The store is `mlflow.tracking_uri` from params, else $MLFLOW_TRACKING_URI, else a SQLite file at
the project root. The project root is DVC's own idea of it ($DVC_ROOT), which points at the real
repository even inside `dvc exp run --queue`'s temporary copy, so queued experiments land in the
same store as everything else.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from qblock.config.schema import MlflowParams
from qblock.core import secrets
from qblock.core.errors import UserError
from qblock.core.machine import project_root


def tracking_uri(params: MlflowParams, root: Path | None = None) -> str:
    root = root or project_root()
    uri = params.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{(root / 'mlflow.db').as_posix()}"
    if "://" in uri:
        return uri
    return f"sqlite:///{(root / uri).resolve().as_posix()}"  # a bare path: a SQLite file


def artifact_root(params: MlflowParams, root: Path | None = None) -> str:
    root = root or project_root()
    location = params.artifact_root
    if location and "://" in location:
        return location
    return (root / (location or "mlartifacts")).resolve().as_uri()


def quiet_mlflow() -> None:
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking._tracking_service.client"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _store_lock(uri: str):
    """For a SQLite store: a lock held while a process opens it. The first opening creates the tables, and two
    queued experiments starting at once both tried to ("table spans already exists": one run lost)."""
    if not uri.startswith("sqlite:"):
        return contextlib.nullcontext()
    from filelock import FileLock

    lock = project_root() / ".qblock" / "mlflow-store.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock), timeout=600)


def connect(params: MlflowParams) -> str:
    """Point MLflow at the configured store; return the experiment id."""
    import mlflow

    quiet_mlflow()
    mlflow.set_tracking_uri(tracking_uri(params))
    served = tracking_uri(params).startswith(("http://", "https://")) and not params.artifact_root
    try:
        with _store_lock(tracking_uri(params)):
            experiment = mlflow.get_experiment_by_name(params.experiment)
            if experiment is not None:
                return experiment.experiment_id
            try:  # a tracking server keeps the files where it was told to (`qblock server --artifacts`)
                return mlflow.create_experiment(params.experiment,
                                                artifact_location=None if served else artifact_root(params))
            except mlflow.exceptions.MlflowException:
                experiment = mlflow.get_experiment_by_name(params.experiment)  # made by a run starting beside us
                if experiment is None:
                    raise
                return experiment.experiment_id
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(secrets.redact(f"MLflow store {tracking_uri(params)}: {exc}")) from None


def tag_experiment(experiment_id: str, tags: dict[str, str]) -> None:
    """Set tags on the experiment in the store `connect` pointed at (how the UI shows it: services/ui_view.py)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_experiment_tag(experiment_id, key, value)


def store_exists(params: MlflowParams) -> bool:
    """False for a SQLite store that was never created (nothing to read; do not create one)."""
    uri = tracking_uri(params)
    return not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///"):]).is_file()


def existing_experiment(params: MlflowParams) -> tuple[Any, str] | None:
    """(a client, the experiment's id) when the store and the experiment exist; never creates either."""
    if not store_exists(params):
        return None
    import mlflow

    quiet_mlflow()
    client = mlflow.MlflowClient(tracking_uri(params))
    experiment = client.get_experiment_by_name(params.experiment)
    return None if experiment is None else (client, experiment.experiment_id)

"""Queries of the MLflow store for people and doctor: the runs to compare the latest with, and every
logged value. (The stages write through model/run_log.py and model/registry.py; this module only reads.)"""

from __future__ import annotations

from typing import Any

from qblock.config.schema import MlflowParams
from qblock.model.champion import CHAMPION, REGISTERED_MODEL
from qblock.model.mlflow_store import existing_experiment


def logged_values(params: MlflowParams) -> list[tuple[str, str, str, str]]:
    """(run id, 'param' or 'tag', key, value) for every run of the experiment in the configured store,
    for `qblock doctor`'s look for secrets; empty when there is no store yet."""
    existing = existing_experiment(params)
    if existing is None:
        return []
    client, experiment_id = existing
    found = []
    for run in client.search_runs([experiment_id], max_results=5000):
        found += [(run.info.run_id, "param", key, value) for key, value in run.data.params.items()]
        found += [(run.info.run_id, "tag", key, value) for key, value in run.data.tags.items()]
    return found


def runs_to_compare(params: MlflowParams, run_id: str | None) -> list[tuple[str, str, dict[str, float]]]:
    """(short label, run name, final metrics) of the champion and of the run before ``run_id`` (the latest
    finished run with final metrics, other than ``run_id``), one entry when they are the same run; for
    `qblock show`. Empty without a store."""
    from mlflow.exceptions import MlflowException

    existing = existing_experiment(params)
    if existing is None:
        return []
    client, experiment_id = existing
    champion: tuple[str, Any] | None = None
    try:
        version = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
        if version.run_id != run_id:
            champion = (f"champion v{version.version}", client.get_run(version.run_id))
    except MlflowException:
        pass
    current = client.get_run(run_id) if run_id else None
    before = f"attributes.start_time < {current.info.start_time}" if current else ""
    previous = next((run for run in client.search_runs([experiment_id], filter_string=before,
                                                        order_by=["start_time DESC"], max_results=20)
                     if run.info.run_id != run_id and run.info.status == "FINISHED" and "mAP50" in run.data.metrics),
                    None)
    found = []
    if champion is not None:
        label, run = champion
        same = previous is not None and previous.info.run_id == run.info.run_id
        found.append((f"{label} = previous" if same else label, run.info.run_name, run.data.metrics))
    if previous is not None and (champion is None or previous.info.run_id != champion[1].info.run_id):
        found.append(("previous", previous.info.run_name, previous.data.metrics))
    return found


def registered_as(params: MlflowParams, run_id: str) -> str | None:
    """What the registry says of the model a run made, for `qblock status`: its version and whether it is
    the champion (and which is, when not); None without a store or a registered version."""
    from mlflow.exceptions import MlflowException

    existing = existing_experiment(params)
    if existing is None:
        return None
    client, _ = existing
    try:
        versions = client.search_model_versions(f"name='{REGISTERED_MODEL}' and run_id='{run_id}'")
    except MlflowException:
        return None
    if not versions:
        return None
    try:
        champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException:
        champion = None
    version = str(max(int(v.version) for v in versions))
    if champion is not None and str(champion.version) == version:
        return f"registered as {REGISTERED_MODEL} v{version}, the champion (propose's default)"
    other = f"; the champion is v{champion.version}, which propose uses unless told `--model {version}`" \
        if champion is not None else "; there is no champion yet"
    return f"registered as {REGISTERED_MODEL} v{version}, a challenger{other}"

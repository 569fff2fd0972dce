"""The project's MLflow store moves with the project: MLflow keeps absolute file locations in it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from tests.conftest import params_of
from tests.repos import sh

LOG_A_RUN = """
import mlflow
from qblock.config.schema import MlflowParams
from qblock.model.mlflow_store import connect
experiment = connect(MlflowParams(None, None, "qblock"))
with mlflow.start_run(experiment_id=experiment) as run:
    mlflow.log_text("hello", "note.txt")
print(run.info.run_id)
"""


@pytest.fixture(autouse=True)
def this_projects_store(monkeypatch):
    """The store the project's own folder names (another test's MLflow URI or DVC root may be in the environment)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)


def log_a_run(project) -> str:
    """A run logged by a process of its own, as each stage is (none holds the store open across a move)."""
    return sh([sys.executable, "-c", LOG_A_RUN], project).stdout.split()[-1]


def test_a_moved_project_logs_into_its_own_folder_and_reads_its_old_runs(tmp_path, monkeypatch):
    import mlflow

    first = tmp_path / "first"
    first.mkdir()
    old_run = log_a_run(first)
    shutil.move(first, tmp_path / "moved")
    moved = tmp_path / "moved"
    monkeypatch.chdir(moved)
    from qblock.history.store_location import follow_move, moved_from

    assert moved_from(params_of("mlflow")) == (first / "mlartifacts").as_uri()  # seen pointing elsewhere
    assert follow_move(params_of("mlflow")) == (first / "mlartifacts").as_uri()
    assert moved_from(params_of("mlflow")) is None
    new_run = log_a_run(moved)
    client = mlflow.MlflowClient(f"sqlite:///{(moved / 'mlflow.db').as_posix()}")
    for run_id in (old_run, new_run):
        uri = client.get_run(run_id).info.artifact_uri
        assert uri.startswith((moved / "mlartifacts").as_uri()), uri
        fetched = client.download_artifacts(run_id, "note.txt", str(tmp_path / run_id))
        assert Path(fetched).read_text() == "hello"
    assert not first.exists()


def test_a_copied_database_without_its_files_is_left_alone_and_said(tmp_path, monkeypatch):
    from qblock.history.store_location import follow_move, moved_from

    first = tmp_path / "first"
    first.mkdir()
    log_a_run(first)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(first / "mlflow.db", copy / "mlflow.db")
    monkeypatch.chdir(copy)
    assert moved_from(params_of("mlflow")) == (first / "mlartifacts").as_uri()
    assert follow_move(params_of("mlflow")) is None  # the files are still in first/: runs there stay readable
    assert moved_from(params_of("mlflow")) == (first / "mlartifacts").as_uri()
    import yaml
    from tests.conftest import REPO

    from qblock.config.compose import compose_params
    from qblock.services.doctor import check_mlflow_store

    (copy / "params.yaml").write_text(yaml.safe_dump(compose_params(REPO)))
    [check] = check_mlflow_store(copy)
    assert not check.ok and (first / "mlartifacts").as_uri() in check.detail and "copy that folder here" in check.fix

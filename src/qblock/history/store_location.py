"""Where the project's MLflow store keeps its files: a store that moves with the project.

MLflow writes absolute file locations into its SQLite store (the experiment's artifact folder, each
run's, each model version's), so a project moved or copied to another folder would go on writing
new runs' files into the old one, and lose them with it. Before a stage or the UI opens the store,
``follow_move`` points those locations at this project's artifact folder; doctor says when a store
points elsewhere and cannot follow (only the database was copied, its files left behind).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from qblock.config.schema import MlflowParams
from qblock.model.mlflow_store import artifact_root, tracking_uri

# MLflow writes absolute file locations into a SQLite store: (table, column) of each
_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                     ("model_versions", "source"), ("model_versions", "storage_location"),
                     ("logged_models", "artifact_location"))


def _file_path(uri: str) -> Path | None:
    return Path(url2pathname(urlsplit(uri).path)) if uri.startswith("file:") else None


def moved_from(params: MlflowParams) -> str | None:
    """The artifact folder a project-local SQLite store still points at when the project was moved or copied
    (MLflow keeps absolute locations); None when it points here, or is no project-local store."""
    uri = tracking_uri(params)
    if not uri.startswith("sqlite:///") or (params.artifact_root and "://" in params.artifact_root):
        return None
    database = Path(uri[len("sqlite:///"):])
    if not database.is_file():
        return None
    with contextlib.closing(sqlite3.connect(database)) as store:
        try:
            row = store.execute("SELECT artifact_location FROM experiments WHERE name = ?",
                                (params.experiment,)).fetchone()
        except sqlite3.Error:
            return None
    here = artifact_root(params)
    if not row or not row[0] or row[0] == here or _file_path(row[0]) is None:
        return None
    return str(row[0])


def follow_move(params: MlflowParams) -> str | None:
    """Point a moved or copied project's SQLite store at this project's artifact folder, every run and model
    version with it; return where it pointed, None when nothing had moved. Left alone when the old folder
    is still there and this one is not (only the database was copied): doctor says so."""
    old = moved_from(params)
    if old is None:
        return None
    here = artifact_root(params)
    old_path, here_path = _file_path(old), _file_path(here)
    if old_path is not None and here_path is not None and old_path.exists() and not here_path.exists():
        return None
    database = Path(tracking_uri(params)[len("sqlite:///"):])
    with contextlib.closing(sqlite3.connect(database)) as store, store:
        tables = {name for (name,) in store.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, column in _LOCATION_COLUMNS:
            if table in tables:
                store.execute(  # the old folder and what is under it; not a sibling that starts with its name
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ? "
                    f"AND (length({column}) = ? OR substr({column}, ?, 1) = '/')",
                    (here, len(old) + 1, len(old), old, len(old), len(old) + 1))
    return old

"""Real repositories for the tests: a copy of this project as a fresh git repo, a shared trained
one (the session's `trained_repo` fixture in conftest), and independent forks of it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

from qblock.core.secrets import WEBHOOK_ENV


def sh(args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"} | (env or {})
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # mlflow.set_tracking_uri() in this process sets it
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def git_identity(repo: Path) -> None:
    """A committer for this repository only (the tests commit, and so does `dvc exp run`)."""
    sh(["git", "config", "user.name", "qblock test"], repo)
    sh(["git", "config", "user.email", "test@qblock.invalid"], repo)


def copy_repo(target: Path) -> Path:
    """The project's tracked and new files (no data, no outputs), as a fresh git repo."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for stale in ("dvc.lock", "metrics.json"):
        (target / stale).unlink(missing_ok=True)
    sh(["git", "init", "-q"], target)
    git_identity(target)
    sh(["git", "add", "-A"], target)
    sh(["git", "commit", "-qm", "copy"], target)
    return target


def mlflow_runs(repo: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{(repo / 'mlflow.db').as_posix()}")
    return mlflow.search_runs(experiment_names=["qblock"], output_format="list")


def fork(repo: Path, target: Path) -> Path:
    """An independent copy of a trained repo (git, DVC cache, MLflow store), for a test that changes it.

    MLflow keeps absolute artifact locations in its database: they are moved to the copy's folder.
    """
    shutil.copytree(repo, target, symlinks=True)
    old, new = repo.resolve().as_posix(), target.resolve().as_posix()
    with sqlite3.connect(target / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in (row[1] for row in db.execute(f"PRAGMA table_info('{table}')")
                           if str(row[2]).upper().startswith(("VARCHAR", "TEXT"))):
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) WHERE "{column}" LIKE ?',
                           (old, new, f"%{old}%"))
    return target


def train_a_smoke_repo(target: Path, webhook_url: str) -> dict:
    """A copy of the project with 3 workbooks of 2 demo pages, trained by `dvc repro` (smoke preset).

    The webhook is this machine's, as people are told to set it: in the environment, never in conf/.
    """
    repo = copy_repo(target)
    sh([sys.executable, "-m", "qblock", "demo-data", "data/dataset_root", "--documents", "3", "--pages", "2"], repo)
    config = repo / "conf" / "config.yaml"  # smoke becomes this copy's default preset
    config.write_text(config.read_text().replace("  - train: cpu", "  - train: smoke"))
    sh([sys.executable, "-m", "qblock", "params"], repo)
    sh(["git", "commit", "-qam", "smoke"], repo)
    first = sh(["dvc", "repro"], repo, env={WEBHOOK_ENV: webhook_url})
    return {"repo": repo, "first": first.stdout + first.stderr}


def folder_nas(tmp_path: Path) -> Path:
    """The NAS as a mounted folder: where its store will be (the parent exists, as a mount point would)."""
    store = tmp_path / "nas" / "qblock-store"
    store.parent.mkdir(parents=True, exist_ok=True)
    return store


def laptop_with_origin(tmp_path: Path, remote: list[str], epochs: int = 2) -> tuple[Path, Path]:
    """A laptop's copy of the project on the smoke preset (``epochs`` of it), pushed to a bare git origin,
    with the NAS as its remote (``remote``: the `qblock remote set` arguments). Returns (laptop, origin)."""
    laptop = copy_repo(tmp_path / "laptop")
    config = laptop / "conf" / "config.yaml"  # the smoke preset, so the desktop trains in seconds
    config.write_text(config.read_text().replace("  - train: cpu", "  - train: smoke"))
    smoke = laptop / "conf" / "train" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("epochs: 2", f"epochs: {epochs}"))
    sh([sys.executable, "-m", "qblock", "params"], laptop)
    sh(["git", "commit", "-qam", "smoke"], laptop)
    bare = tmp_path / "origin.git"
    sh(["git", "init", "-q", "--bare", str(bare)], tmp_path)
    sh(["git", "remote", "add", "origin", str(bare)], laptop)
    sh(["git", "push", "-q", "-u", "origin", "HEAD"], laptop)
    sh([sys.executable, "-m", "qblock", "remote", "set", *remote], laptop)
    return laptop, bare


def published_laptop(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A laptop (smoke preset, folder NAS, bare origin) that has published six demo pages from its app.
    Returns (laptop, origin, NAS store)."""
    nas = folder_nas(tmp_path)
    laptop, bare = laptop_with_origin(tmp_path, [str(nas)])
    app = tmp_path / "app"
    sh([sys.executable, "-m", "qblock", "demo-data", str(app), "--documents", "3", "--pages", "2"], laptop)
    sh([sys.executable, "-m", "qblock", "publish", "--app", str(app)], laptop)
    return laptop, bare, nas

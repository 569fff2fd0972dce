"""Laptop -> NAS -> desktop -> NAS -> laptop, week after week, with real git, dvc and a NAS
(a folder, or a real SSH server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.repos import git_identity, laptop_with_origin, sh

pytestmark = pytest.mark.slow


def qb(*args: str, cwd: Path) -> str:
    result = sh([sys.executable, "-m", "qblock", *args], cwd)
    return result.stdout + result.stderr


def clone(bare: Path, target: Path, remote: list[str]) -> Path:
    sh(["git", "clone", "-q", str(bare), str(target)], bare.parent)
    git_identity(target)
    qb("remote", "set", *remote, cwd=target)
    return target


def doctor_finds_nothing(repo: Path, when: str) -> None:
    result = sh([sys.executable, "-m", "qblock", "doctor"], repo, check=False)
    assert result.returncode == 0 and "problem" not in result.stdout, f"{repo.name}, {when}:\n{result.stdout}"


def add_workbook(app: Path, week: int) -> str:
    """The app gets a new workbook: fresh demo pages under a new document id."""
    scratch = app.parent / f"scratch-{week}"
    sh([sys.executable, "-m", "qblock", "demo-data", str(scratch), "--documents", "1", "--pages", "2",
        "--seed", str(week)], app.parent)
    (made,) = (scratch / "documents").iterdir()
    name = f"week {week} 워크북"
    shutil.move(made, app / "documents" / name)
    shutil.rmtree(scratch)
    return name


def publish_with_the_venvs_qblock_only(laptop: Path) -> str:
    """As a scheduled task or an IDE button runs it: the venv's `qblock`, the venv not on PATH."""
    qblock = Path(sys.executable).parent / ("qblock.exe" if os.name == "nt" else "qblock")
    bare_path = os.pathsep.join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if Path(p).is_dir())
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "MLFLOW_TRACKING_URI")} | {"PATH": bare_path}
    assert shutil.which("qblock", path=bare_path) is None and shutil.which("dvc", path=bare_path) is None
    result = subprocess.run([str(qblock), "publish"], cwd=laptop, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def commits(bare: Path) -> list[str]:
    return sh(["git", "log", "--format=%s"], bare).stdout.splitlines()


def test_three_weeks_of_labels_out_and_models_back(tmp_path, nas):
    remote, store = nas
    laptop, bare = laptop_with_origin(tmp_path, remote)

    # week 1, laptop: the app labels pages in its own folder, outside the repo; publish
    app = tmp_path / "app on the laptop"
    qb("demo-data", str(app), "--documents", "3", "--pages", "2", cwd=laptop)
    log = qb("publish", "--app", str(app), cwd=laptop)
    assert "files copied" in log and "publish: committed \"labels: 6 pages" in log and "publish: done" in log
    assert sh(["git", "status", "--porcelain"], laptop).stdout == ""
    assert commits(bare)[0].startswith("labels: 6 pages")  # pushed
    assert any(p.is_file() for p in (store / "files").rglob("*"))  # and its data is on the NAS
    doctor_finds_nothing(laptop, "week 1, after publish")
    desktop = clone(bare, tmp_path / "desktop", remote)

    for week in (1, 2, 3):
        if week == 2:  # a new workbook; published by the venv's qblock with the venv not on PATH
            add_workbook(app, week)
            log = publish_with_the_venvs_qblock_only(laptop)
            assert "publish: committed \"labels: 8 pages" in log and "publish: done" in log
        if week == 3:  # a new workbook; git is unreachable for the first try, after the data went to the NAS
            add_workbook(app, week)
            sh(["git", "remote", "set-url", "origin", str(tmp_path / "origin moved away")], laptop)
            failed = sh([sys.executable, "-m", "qblock", "publish"], laptop, check=False)
            assert failed.returncode == 1 and "git push failed" in failed.stdout, failed.stdout + failed.stderr
            assert "publish: committed \"labels: 10 pages" in failed.stdout
            sh(["git", "remote", "set-url", "origin", str(bare)], laptop)
            log = qb("publish", cwd=laptop)  # the same command again finishes the job
            assert "committed" not in log and "publish: done" in log
            assert sum(c.startswith("labels: 10 pages") for c in commits(bare)) == 1  # no duplicate, none lost
        if week > 1:
            doctor_finds_nothing(laptop, f"week {week}, after publish")

        # desktop: pull, train, push
        log = qb("desktop-run", cwd=desktop)
        assert "desktop-run: committed \"train: mAP50" in log and "desktop-run: done" in log, log
        assert commits(bare)[0].startswith("train: mAP50")
        doctor_finds_nothing(desktop, f"week {week}, after desktop-run")
        pages = len(list((desktop / "data" / "yolo" / "labels").glob("*.txt")))
        assert pages == 4 + 2 * week  # the labels came from the NAS, the new workbook with them

        # laptop: the new model back
        log = qb("pull-model", cwd=laptop)
        assert "pull-model: models/best.pt" in log
        assert (laptop / "models" / "best.pt").read_bytes() == (desktop / "models" / "best.pt").read_bytes()
        assert (laptop / "metrics.json").read_text() == (desktop / "metrics.json").read_text()
        doctor_finds_nothing(laptop, f"week {week}, after pull-model")

    # a new laptop (a fresh clone): the model only, no training data
    laptop2 = clone(bare, tmp_path / "laptop2", remote)
    log = qb("pull-model", cwd=laptop2)
    model = laptop2 / "models" / "best.pt"
    assert model.read_bytes() == (desktop / "models" / "best.pt").read_bytes()
    assert json.loads((laptop2 / "metrics.json").read_text()) == json.loads((desktop / "metrics.json").read_text())
    assert not (laptop2 / "data" / "dataset_root").exists() and not (laptop2 / "data" / "yolo").exists()
    doctor_finds_nothing(laptop2, "a fresh clone, after pull-model")

    from ultralytics import YOLO

    assert YOLO(str(model)).names == {0: "Question_Block"}

"""Laptop -> NAS -> desktop -> NAS -> laptop, with real git, dvc and a folder playing the NAS."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tests.test_pipeline import copy_repo, git_identity, sh

pytestmark = pytest.mark.slow


def qb(*args: str, cwd: Path) -> str:
    result = sh([sys.executable, "-m", "qblock", *args], cwd)
    return result.stdout + result.stderr


def clone(bare: Path, target: Path, remote: list[str]) -> Path:
    sh(["git", "clone", "-q", str(bare), str(target)], bare.parent)
    git_identity(target)
    qb("remote", "set", *remote, cwd=target)
    return target


def test_labels_go_to_the_desktop_and_the_model_comes_back(tmp_path, nas):
    remote, store = nas
    laptop = copy_repo(tmp_path / "laptop")
    config = laptop / "conf" / "config.yaml"  # the smoke preset, so the desktop trains in seconds
    config.write_text(config.read_text().replace("  - train: cpu", "  - train: smoke"))
    qb("params", cwd=laptop)
    sh(["git", "commit", "-qam", "smoke"], laptop)
    bare = tmp_path / "origin.git"
    sh(["git", "init", "-q", "--bare", str(bare)], tmp_path)
    sh(["git", "remote", "add", "origin", str(bare)], laptop)
    sh(["git", "push", "-q", "-u", "origin", "HEAD"], laptop)
    qb("remote", "set", *remote, cwd=laptop)

    # laptop: the app labels pages in its own folder, outside the repo; publish
    app = tmp_path / "app on the laptop"
    qb("demo-data", str(app), "--documents", "3", "--pages", "2", cwd=laptop)
    log = qb("publish", "--app", str(app), cwd=laptop)
    assert "files copied" in log and "publish: committed \"labels: 6 pages" in log and "publish: done" in log
    assert sh(["git", "status", "--porcelain"], laptop).stdout == ""
    assert sh(["git", "log", "-1", "--format=%s"], bare).stdout.startswith("labels: 6 pages")  # pushed
    assert any(p.is_file() for p in (store / "files").rglob("*"))  # and its data is on the NAS
    doctor = sh([sys.executable, "-m", "qblock", "doctor"], laptop, check=False)
    assert doctor.returncode == 0 and "problem" not in doctor.stdout, doctor.stdout

    # desktop: pull, train, push
    desktop = clone(bare, tmp_path / "desktop", remote)
    log = qb("desktop-run", cwd=desktop)
    assert "desktop-run: committed \"train: mAP50" in log and "desktop-run: done" in log
    assert (desktop / "data" / "dataset_root" / "documents").is_dir()  # the labels came from the NAS
    metrics = json.loads((desktop / "metrics.json").read_text())

    # laptop (a fresh clone of it, as on a new machine): the model only
    laptop2 = clone(bare, tmp_path / "laptop2", remote)
    log = qb("pull-model", cwd=laptop2)
    assert "pull-model: models/best.pt" in log
    model = laptop2 / "models" / "best.pt"
    assert model.read_bytes() == (desktop / "models" / "best.pt").read_bytes()
    assert json.loads((laptop2 / "metrics.json").read_text()) == metrics
    assert not (laptop2 / "data" / "dataset_root").exists() and not (laptop2 / "data" / "yolo").exists()

    from ultralytics import YOLO

    assert YOLO(str(model)).names == {0: "Question_Block"}

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def qblock(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qblock", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_with_its_purpose():
    result = qblock("--help")
    assert result.returncode == 0
    for command in ("demo-data", "params", "export", "split", "validate", "train", "evaluate", "status", "show", "ui",
                    "propose", "publish", "push", "desktop-run", "watch", "pull-model", "gc", "doctor", "server"):
        assert f" {command} " in result.stdout


def test_user_mistake_is_one_clear_line_without_a_traceback(tmp_path):
    result = qblock("export", cwd=tmp_path)  # no params.yaml here
    assert result.returncode == 1
    assert "params.yaml: not found. Run `qblock params`" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_demo_data_is_deterministic_and_has_a_korean_id_with_a_space(tmp_path):
    for name in ("a", "b"):
        result = qblock("demo-data", str(tmp_path / name), "--documents", "2", "--pages", "2", "--seed", "7")
        assert result.returncode == 0
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in a)
    documents = [p.name for p in (tmp_path / "a" / "documents").iterdir()]
    assert any(" " in d and any("\uac00" <= c <= "\ud7a3" for c in d) for d in documents)


def test_demo_data_refuses_to_write_over_existing_documents(tmp_path):
    assert qblock("demo-data", str(tmp_path), "--documents", "1", "--pages", "1").returncode == 0
    result = qblock("demo-data", str(tmp_path), "--documents", "1", "--pages", "1")
    assert result.returncode == 1 and "already has documents" in result.stdout


def test_first_stage_stops_when_the_labeled_pages_are_missing_and_says_what_brings_them(tmp_path):
    import os
    import shutil

    shutil.copytree(REPO / "conf", tmp_path / "conf")
    assert qblock("params", cwd=tmp_path).returncode == 0

    def check(**env: str) -> str:
        result = subprocess.run([sys.executable, "-m", "qblock", "params", "--check", "--stamp", "ok"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120, env=os.environ | env)
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
        assert not (tmp_path / "ok").exists()
        return " ".join(result.stdout.split())  # rich wraps long lines

    said = check()
    assert "data/dataset_root: no labeled pages here (no documents/ folder)" in said
    assert "qblock demo-data data/dataset_root" in said
    # a queued `dvc exp run`: DVC_ROOT is the parent repo, the stage runs in a temporary copy
    said = check(DVC_ROOT=str(tmp_path.parent), DVC_EXP_NAME="queued-one")
    assert "queued experiment" in said and "dvc add data/dataset_root" in said
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_root.dvc").write_text("outs:\n- path: dataset_root\n")
    assert "run `dvc pull data/dataset_root.dvc`" in check()
    status = qblock("status", cwd=tmp_path)  # the same advice from `qblock status`
    assert status.returncode == 1 and "run `dvc pull data/dataset_root.dvc`" in " ".join(status.stdout.split())

    assert qblock("demo-data", "data/dataset_root", "--documents", "1", "--pages", "1", cwd=tmp_path).returncode == 0
    result = qblock("params", "--check", "--stamp", "ok", cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "ok").is_file()

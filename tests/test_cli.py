from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def qblock(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qblock", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_help_lists_every_command_with_its_purpose():
    result = qblock("--help")
    assert result.returncode == 0
    for command in ("demo-data", "params", "export", "split", "validate", "train", "evaluate", "status", "show", "ui"):
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

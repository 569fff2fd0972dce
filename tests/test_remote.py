"""The NAS remote: `qblock remote set` checks before it changes anything."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import yaml
from tests.repos import copy_repo
from tests.test_cli import qblock


def test_a_reachable_folder_becomes_this_machines_remote_only(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    nas = tmp_path / "nas" / "qblock-store"
    nas.parent.mkdir()
    result = qblock("remote", "set", str(nas), cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reachable and writable" in result.stdout
    assert str(nas) in (repo / ".dvc" / "config.local").read_text()
    assert "nas" not in (repo / ".dvc" / "config").read_text()  # never in the committed config
    assert [p.name for p in nas.iterdir()] == [".qblock-remote"]  # the probe cleaned up after itself; the mark stays


def repo_with_a_folder_remote(tmp_path: Path) -> tuple[Path, str]:
    """A repo copy whose remote is a reachable folder; also its .dvc/config.local as set."""
    repo = copy_repo(tmp_path / "repo")
    nas = tmp_path / "nas"
    nas.mkdir()
    assert qblock("remote", "set", str(nas), cwd=repo).returncode == 0
    return repo, (repo / ".dvc" / "config.local").read_text()


def test_a_missing_mount_is_a_clear_error_and_changes_nothing(tmp_path):
    repo, before = repo_with_a_folder_remote(tmp_path)
    result = qblock("remote", "set", str(tmp_path / "not-mounted" / "qblock-store"), cwd=repo)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "not-mounted does not exist: is the NAS mounted" in result.stdout
    assert (repo / ".dvc" / "config.local").read_text() == before
    assert not (tmp_path / "not-mounted").exists()
    for mistake, said in ((["webdav2://nas/store"], "DVC does not take this as a remote"),
                          ([str(tmp_path / "nas"), "--keyfile", "id_nas"], "--keyfile is for ssh:// remotes")):
        result = qblock("remote", "set", *mistake, cwd=repo)
        assert result.returncode == 1 and said in result.stdout and "Traceback" not in result.stderr
        assert (repo / ".dvc" / "config.local").read_text() == before


def test_an_unreachable_ssh_remote_fails_within_10_s_and_keeps_the_old_one(tmp_path):
    repo, before = repo_with_a_folder_remote(tmp_path)

    def set_remote(url: str) -> str:
        start = time.monotonic()
        result = qblock("remote", "set", url, cwd=repo)  # the default timeout
        took = time.monotonic() - start
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
        assert took < 10, f"{url}: {took:.1f} s"  # the whole command, Python and dvc starting included
        assert (repo / ".dvc" / "config.local").read_text() == before
        return " ".join(result.stdout.split())

    with socket.socket() as listener:  # a port that accepts connections and then never speaks
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        said = set_remote(f"ssh://nobody@127.0.0.1:{listener.getsockname()[1]}/qblock-store")
    assert "no answer within 6 s. Is the NAS on and reachable" in said
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    said = set_remote(f"ssh://nobody@127.0.0.1:{port}/qblock-store")
    assert f"ssh://nobody@127.0.0.1:{port}/qblock-store: not reachable or not writable" in said


def test_doctor_names_each_problem_with_its_fix(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    result = qblock("doctor", cwd=repo)  # one machine, no NAS, no origin: nothing wrong
    said = " ".join(result.stdout.split())
    assert result.returncode == 0 and "doctor: all good" in said, result.stdout
    assert "ok NAS remote: no remote on this machine: it works on its own" in said
    assert "ok commits pushed: this branch has no upstream: one machine on its own" in said
    (repo / ".dvc" / "config.local").write_text('[core]\n    remote = nas\n[\'remote "nas"\']\n    url = /nowhere\n')
    result = qblock("doctor", cwd=repo)  # a NAS named: now the missing origin is a problem
    assert result.returncode == 1
    assert "no upstream" in result.stdout and "git push -u origin HEAD" in result.stdout
    params = repo / "params.yaml"
    epochs = yaml.safe_load(params.read_text())["train"]["epochs"]
    params.write_text(params.read_text().replace(f"epochs: {epochs}", f"epochs: {epochs + 1}"))
    assert "params.yaml differs from conf/" in qblock("doctor", cwd=repo).stdout


def test_the_is_it_on_the_nas_check_reads_each_dvc_status(tmp_path):
    """`deleted` (on the NAS, not in this cache) is fine; `new` and `missing` are not; a failed
    status is "cannot tell", never "all there"."""
    import pytest
    from tests.repos import sh

    from qblock.core.errors import UserError
    from qblock.sync.remote import missing_from_remote, not_on_remote

    repo, _ = repo_with_a_folder_remote(tmp_path)
    for name in ("pushed", "only_here", "nowhere"):
        (repo / f"{name}.txt").write_text(f"{name}\n")
    sh(["dvc", "add", "pushed.txt"], repo)
    sh(["dvc", "push", "pushed.txt"], repo)
    sh(["dvc", "add", "only_here.txt", "nowhere.txt"], repo)
    for name in ("pushed", "nowhere"):  # gone from this machine's cache (as after `pull-model`)
        md5 = (repo / f"{name}.txt.dvc").read_text().split("md5: ")[1][:32]
        (repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).unlink()
    assert not_on_remote(repo) == {"only_here.txt": "new", "nowhere.txt": "missing"}
    assert missing_from_remote({"a": "deleted", "b": "new", "c": "missing", "d": "modified"}) == \
        {"b": "new", "c": "missing", "d": "modified"}

    (repo / "nowhere.txt.dvc").write_text("<<<<<<< HEAD\nouts: [\n")  # a merge conflict: DVC cannot answer
    with pytest.raises(UserError, match="cannot tell whether this commit's data is on the NAS"):
        not_on_remote(repo)
    doctor = qblock("doctor", cwd=repo)
    assert doctor.returncode == 1 and "everything this commit needs is on the NAS" not in doctor.stdout
    assert "cannot tell whether this commit's data is on the NAS" in " ".join(doctor.stdout.split())

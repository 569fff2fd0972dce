"""`qblock doctor --deep`: a byte flipped on the NAS is found and named, and repaired from a good
copy (real dvc, a folder NAS and a real SSH one)."""

from __future__ import annotations

import sys

import pytest
from tests.repos import copy_repo, sh

from qblock.sync.model_version import file_md5


def qblock(*args: str, cwd, check: bool = True):
    return sh([sys.executable, "-m", "qblock", *args], cwd, check=check)


@pytest.mark.slow
def test_a_flipped_byte_on_the_nas_is_named_and_repaired(tmp_path, nas):
    remote, store = nas
    repo = copy_repo(tmp_path / "repo")
    qblock("demo-data", "data/dataset_root", "--documents", "2", "--pages", "2", cwd=repo)
    said = qblock("remote", "set", *remote, cwd=repo).stdout
    ssh = remote[0].startswith("ssh://")
    assert ("pushes stream what the NAS lacks over one ssh connection" in said) == ssh, said  # what qblock push does
    sh([sys.executable, "-m", "dvc", "add", "data/dataset_root"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "labels"], repo)
    pushed = qblock("push", cwd=repo).stdout
    assert ("objects the NAS lacks, in one stream over ssh" in pushed) == ssh, pushed

    healthy = qblock("doctor", "--deep", cwd=repo, check=False).stdout
    assert "ok      NAS content: 9 objects this commit needs read back and match their hashes" in healthy, healthy

    page = repo / "data" / "dataset_root" / "documents"
    (first, second) = sorted(p for p in page.rglob("page_001.png"))
    bad = store / "files" / "md5" / file_md5(first)[:2] / file_md5(first)[2:]
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, mid-file: the size is unchanged, `dvc status -c` sees nothing
    bad.chmod(0o644)
    bad.write_bytes(bytes(data))
    gone = store / "files" / "md5" / file_md5(second)[:2] / file_md5(second)[2:]
    gone.unlink()
    assert "problem" not in sh([sys.executable, "-m", "dvc", "status", "-c"], repo).stdout  # existence only

    found = qblock("doctor", "--deep", cwd=repo, check=False)
    assert found.returncode == 1
    text = found.stdout.replace("\n", " ")
    assert "problem NAS content: 2 of 9 objects this commit needs are bad" in text, found.stdout
    assert f"{first.relative_to(repo).as_posix()}: content does not match its hash" in text
    assert f"{second.relative_to(repo).as_posix()}: missing on the NAS" in text
    assert bad.as_posix() in text
    assert "qblock doctor --deep --repair" in text and "this machine holds good copies of 2" in text

    repaired = qblock("doctor", "--deep", "--repair", cwd=repo, check=False).stdout
    assert "2 repaired from this machine's copies" in repaired, repaired
    assert file_md5(bad) == file_md5(first) and file_md5(gone) == file_md5(second)
    assert "ok      NAS content: 9 objects" in qblock("doctor", "--deep", cwd=repo, check=False).stdout

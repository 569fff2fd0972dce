"""dvc push to the NAS when things go wrong: killed midway, or two machines at once."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.repos import git_identity, sh

pytestmark = pytest.mark.slow


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "dvc", *args], cwd)


def new_repo(path: Path, remote: list[str]) -> Path:
    path.mkdir(parents=True)
    sh(["git", "init", "-q"], path)
    git_identity(path)
    dvc("init", "-q", cwd=path)
    sh([sys.executable, "-m", "qblock", "remote", "set", *remote], path)
    return path


def write_pages(folder: Path, count: int, seed: int, size: int = 40_000) -> None:
    """``count`` page-sized files of random bytes (each one a distinct DVC object)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"page_{n:04d}.png").write_bytes(rng.randbytes(size))


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def objects_are_whole(store: Path) -> int:
    """Every object under its content-address name holds exactly that content; how many there are."""
    objects = [p for p in (store / "files" / "md5").rglob("*") if p.is_file() and not p.name.startswith(".")] \
        if (store / "files").exists() else []  # .NAME.tmp: an upload DVC had not renamed into place yet
    for path in objects:
        if not path.name.endswith(".dir"):
            assert hashlib.md5(path.read_bytes()).hexdigest() == path.parent.name + path.name, f"torn: {path}"
    return len(objects)


def kill_push_midway(command: list[str], repo: Path, store: Path) -> int:
    """Start a push and SIGKILL its process group once 200 objects are on the NAS; how many were counted."""
    push = subprocess.Popen(command, cwd=repo, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    landed = 0
    while time.monotonic() < deadline and push.poll() is None:
        # anywhere on the NAS: qblock's stream lands in a folder of its own before it moves into place
        landed = sum(1 for p in store.rglob("*") if p.is_file() and "md5" in p.parts) if store.exists() else 0
        if landed >= 200:
            os.killpg(push.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    push.wait()
    return landed


@pytest.mark.parametrize("pusher", ["dvc push", "qblock push"])
def test_a_killed_push_is_finished_by_the_next_and_pulls_back_identical(tmp_path, nas, pusher):
    remote, store = nas
    laptop = new_repo(tmp_path / "laptop", remote)
    write_pages(laptop / "data" / "dataset_root", 1500, seed=1)
    dvc("add", "data/dataset_root", cwd=laptop)
    sh(["git", "add", "-A"], laptop)
    sh(["git", "commit", "-qm", "pages"], laptop)

    command = [sys.executable, "-m", *pusher.split()]
    # A loaded machine can let the push run to its end between two counts, or between the count that calls for
    # the kill and the kill itself; then nothing was interrupted, so the NAS is emptied and the push caught again.
    for _attempt in range(3):
        landed = kill_push_midway(command, laptop, store)
        if objects_are_whole(store) < 1501:  # killed mid-write, and no object is torn
            break
        shutil.rmtree(store)
    else:
        pytest.fail("the push finished before every one of three kills")
    assert 200 <= landed < 1500, f"push was not caught midway ({landed} objects)"

    sh(command, laptop)  # the rerun finishes the job
    assert objects_are_whole(store) == 1501  # every page and the folder's listing
    desktop = tmp_path / "desktop"
    sh(["git", "clone", "-q", str(laptop), str(desktop)], tmp_path)
    sh([sys.executable, "-m", "qblock", "remote", "set", *remote], desktop)
    dvc("pull", cwd=desktop)
    assert digest(desktop / "data" / "dataset_root") == digest(laptop / "data" / "dataset_root")


@pytest.mark.parametrize("pusher", ["dvc push", "qblock push"])
def test_two_machines_pushing_at_once_both_finish_and_the_remote_holds_both(tmp_path, nas, pusher):
    remote, _ = nas
    machines = [new_repo(tmp_path / name, remote) for name in ("laptop", "desktop")]
    for seed, repo in enumerate(machines):
        write_pages(repo / "data" / "shared", 300, seed=99)  # the same objects from both sides
        write_pages(repo / "data" / "own", 300, seed=seed)  # and some of each machine's own
        dvc("add", "data/shared", "data/own", cwd=repo)
        sh(["git", "add", "-A"], repo)
        sh(["git", "commit", "-qm", "data"], repo)
    pushes = [subprocess.Popen([sys.executable, "-m", *pusher.split()], cwd=repo, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True) for repo in machines]
    outputs = [p.communicate(timeout=600)[0] for p in pushes]
    assert [p.returncode for p in pushes] == [0, 0], outputs
    for n, repo in enumerate(machines):
        assert json.loads(dvc("status", "--cloud", "--json", cwd=repo).stdout) == {}, n  # all on the NAS
        fresh = tmp_path / f"fresh{n}"
        sh(["git", "clone", "-q", str(repo), str(fresh)], tmp_path)
        sh([sys.executable, "-m", "qblock", "remote", "set", *remote], fresh)
        dvc("pull", cwd=fresh)
        for folder in ("shared", "own"):
            assert digest(fresh / "data" / folder) == digest(repo / "data" / folder)

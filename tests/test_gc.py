"""`qblock gc`: cleanup that never deletes another machine's work (real git origin, folder NAS,
dvc, a real desktop-run)."""

from __future__ import annotations

import shutil
import sys

import pytest
from tests.repos import published_laptop, sh
from tests.test_round_trip import clone, qb

from qblock.sync.model_version import file_md5

pytestmark = pytest.mark.slow


def object_path(store, md5: str):
    return store / "files" / "md5" / md5[:2] / md5[2:]


def test_gc_on_a_stale_laptop_keeps_the_desktops_new_model_and_frees_the_rest(tmp_path):
    laptop, bare, nas = published_laptop(tmp_path)

    # something pushed that no commit references: a scratch folder added, pushed, then dropped
    scratch = laptop / "scratch"
    scratch.mkdir()
    (scratch / "notes.bin").write_bytes(b"scratch " * 50_000)
    sh([sys.executable, "-m", "dvc", "add", "scratch"], laptop)
    sh([sys.executable, "-m", "dvc", "push", "scratch.dvc"], laptop)
    orphan = object_path(nas, file_md5(scratch / "notes.bin"))
    assert orphan.is_file()
    sh(["git", "reset", "-q", "--hard", "HEAD"], laptop)  # never committed
    shutil.rmtree(scratch)
    assert sh(["git", "status", "--porcelain"], laptop).stdout.strip() == ""

    # the desktop trains and pushes a model; the laptop has not fetched since
    desktop = clone(bare, tmp_path / "desktop", [str(nas)])
    qb("desktop-run", cwd=desktop)
    model = object_path(nas, file_md5(desktop / "models" / "best.pt"))
    assert model.is_file()

    # plain `dvc gc -c -w` on (a copy of) the stale laptop and (a copy of) the NAS deletes that model
    nas_copy, laptop_copy = tmp_path / "nas copy", tmp_path / "laptop copy"
    shutil.copytree(nas, nas_copy)
    shutil.copytree(laptop, laptop_copy, symlinks=True)
    sh([sys.executable, "-m", "dvc", "remote", "modify", "--local", "nas", "url", str(nas_copy)], laptop_copy)
    sh([sys.executable, "-m", "dvc", "gc", "-c", "-w", "-f"], laptop_copy)
    assert not object_path(nas_copy, model.parent.name + model.name).exists()  # the desktop's model: gone

    # `qblock gc --remote` on the stale laptop: it fetches first, keeps the model, frees the orphan
    dry = qb("gc", "--remote", "--dry-run", cwd=laptop)
    assert "would remove" in dry and orphan.is_file()  # counted, not deleted
    log = qb("gc", "--remote", cwd=laptop)
    assert "removed" in log.lower(), log
    assert model.is_file() and not orphan.is_file()
    fresh = clone(bare, tmp_path / "fresh laptop", [str(nas)])
    assert "pull-model: models/best.pt" in qb("pull-model", cwd=fresh)
    assert (fresh / "models" / "best.pt").read_bytes() == (desktop / "models" / "best.pt").read_bytes()
    sh([sys.executable, "-m", "dvc", "pull"], fresh)  # every page of every commit's labels still pulls
    assert "data pushed: everything this commit needs is on the NAS" in qb("doctor", cwd=fresh)

    # it refuses while this machine has commits the origin lacks, and when the origin does not answer
    (laptop / "notes.txt").write_text("a local commit\n")
    sh(["git", "add", "notes.txt"], laptop)
    sh(["git", "commit", "-qm", "not pushed yet"], laptop)
    refused = sh([sys.executable, "-m", "qblock", "gc", "--remote"], laptop, check=False)
    assert refused.returncode == 1 and "1 commit(s) here are not on the origin" in refused.stdout
    assert "Nothing was deleted" in refused.stdout
    sh(["git", "reset", "-q", "--hard", "HEAD~1"], laptop)
    bare.rename(tmp_path / "origin away")
    refused = sh([sys.executable, "-m", "qblock", "gc"], laptop, check=False)
    assert refused.returncode == 1 and "cannot reach the git origin" in refused.stdout
    doctor = sh([sys.executable, "-m", "qblock", "doctor"], laptop, check=False).stdout
    assert "never plain `dvc gc -c`" in doctor


def test_half_written_files_are_reported_by_doctor_and_deleted_by_gc(tmp_path):
    """An interrupted push (a full NAS) leaves *.tmp files among the objects, in the cache and on the
    NAS; doctor names them, gc deletes them, fresh ones (a push running now) are left alone."""
    import os
    import time

    laptop, _, nas = published_laptop(tmp_path)
    old = time.time() - 7200
    stale = [nas / "files" / "md5" / "ab" / "cdef0123456789.e3b0c442.tmp",
             laptop / ".dvc" / "cache" / "files" / "md5" / "cd" / "ef0123456789ab.98fc1c14.tmp"]
    fresh = nas / "files" / "md5" / "ab" / "0123456789cdef.5d41402a.tmp"
    for path in [*stale, fresh]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a page" * 1000)
    for path in stale:
        os.utime(path, (old, old))
    said = " ".join(sh([sys.executable, "-m", "qblock", "doctor"], laptop, check=False).stdout.split())
    assert "problem leftover files: 2 half-written file(s)" in said and "qblock gc deletes them" in said
    qb("gc", cwd=laptop)
    assert not any(p.exists() for p in stale) and fresh.exists()
    after = sh([sys.executable, "-m", "qblock", "doctor"], laptop, check=False).stdout
    assert "ok leftover files" in " ".join(after.split())

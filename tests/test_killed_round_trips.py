"""A `publish` killed between `dvc push` and `git push`, and a `desktop-run` killed after its
commit (the power goes; no cleanup of any kind): the next run finishes the job, with no second
commit and nothing lost (real git origin, folder NAS, dvc, training)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.repos import folder_nas, laptop_with_origin, published_laptop, sh
from tests.test_round_trip import clone, commits, qb
from tests.test_watch import wait_for

pytestmark = pytest.mark.slow


def kill_at_git_push(repo: Path, *command: str) -> None:
    """Run `qblock COMMAND` and kill its whole process group once it reaches `git push` (a pre-push hook
    says so and waits): its data is on the NAS, its commit made, the push not done."""
    hook, reached = repo / ".git" / "hooks" / "pre-push", repo / "reached-git-push"
    hook.write_text(f"#!/bin/sh\ntouch '{reached}'\nsleep 600\n")
    hook.chmod(0o755)
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    running = subprocess.Popen([sys.executable, "-m", "qblock", *command], cwd=repo, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(reached.is_file, 300, f"{command[0]} reaching git push", running)
    os.killpg(running.pid, signal.SIGKILL)
    running.wait()
    hook.unlink()
    reached.unlink()
    time.sleep(0.1)


def test_killed_publish_and_desktop_run_are_finished_by_running_them_again(tmp_path):
    nas = folder_nas(tmp_path)
    laptop, bare = laptop_with_origin(tmp_path, [str(nas)])
    app = tmp_path / "app"
    qb("demo-data", str(app), "--documents", "3", "--pages", "2", cwd=laptop)

    kill_at_git_push(laptop, "publish", "--app", str(app))
    assert not commits(bare)[0].startswith("labels:")  # the commit never reached the origin ...
    assert sh(["git", "log", "-1", "--format=%s"], laptop).stdout.startswith("labels: 6 pages")  # ... but is made
    log = qb("publish", cwd=laptop)
    assert "committed" not in log and "push: the commit to git" in log and "publish: done" in log, log
    assert sum(c.startswith("labels: 6 pages") for c in commits(bare)) == 1

    desktop = clone(bare, tmp_path / "desktop", [str(nas)])
    kill_at_git_push(desktop, "desktop-run")
    assert commits(bare)[0].startswith("labels:")
    assert sh(["git", "log", "-1", "--format=%s"], desktop).stdout.startswith("train: mAP50")
    log = qb("desktop-run", cwd=desktop)
    assert "committed" not in log and "desktop-run: done" in log, log
    assert [c.startswith("train: mAP50") for c in commits(bare)[:2]] == [True, False]  # exactly one train commit

    assert "pull-model: models/best.pt" in qb("pull-model", "--if-newer", cwd=laptop)
    assert (laptop / "models" / "best.pt").read_bytes() == (desktop / "models" / "best.pt").read_bytes()


def test_a_desktop_run_whose_origin_moved_on_keeps_its_model_on_a_branch_and_trains_the_newer_labels(tmp_path):
    """The laptop publishes again while the desktop trains: the desktop's commit can no longer go on top."""
    laptop, bare, nas = published_laptop(tmp_path)
    desktop = clone(bare, tmp_path / "desktop", [str(nas)])
    helper = clone(bare, tmp_path / "helper", [str(nas)])
    hook = desktop / ".git" / "hooks" / "pre-commit"  # the origin moves on after training, before the commit
    hook.write_text(f"#!/bin/sh\nunset GIT_DIR GIT_INDEX_FILE GIT_WORK_TREE\n"
                    f"git -C '{helper}' commit -q --allow-empty -m 'newer labels' && git -C '{helper}' push -q\n")
    hook.chmod(0o755)

    moved = sh([sys.executable, "-m", "qblock", "desktop-run"], desktop, check=False)
    hook.unlink()
    said = " ".join(moved.stdout.split())
    assert moved.returncode == 1 and "the origin moved on while this model trained" in said, said
    (branch,) = [b.strip() for b in sh(["git", "branch", "--list", "qblock/trained-*"], bare).stdout.splitlines()]
    kept = sh(["git", "log", "-1", "--format=%s", branch], bare).stdout
    assert kept.startswith("train: mAP50") and branch.removeprefix("qblock/trained-") in said
    assert sh(["git", "rev-parse", "HEAD"], desktop).stdout == sh(["git", "rev-parse", "HEAD"], bare).stdout
    assert sh(["git", "status", "--porcelain", "--untracked-files=no"], desktop).stdout == ""

    # the rerun trains the newer commit; this time the power goes at its `git push`, and while the desktop is off
    # the laptop publishes once more: the rerun keeps the unpushed result on a branch and trains the newest labels
    kill_at_git_push(desktop, "desktop-run")
    unpushed = sh(["git", "rev-parse", "--short=7", "HEAD"], desktop).stdout.strip()
    assert sh(["git", "log", "-1", "--format=%s", unpushed], desktop).stdout.startswith("train: mAP50")
    sh(["git", "pull", "-q"], helper)
    sh(["git", "commit", "-q", "--allow-empty", "-m", "newest labels"], helper)
    sh(["git", "push", "-q"], helper)

    log = " ".join(qb("desktop-run", cwd=desktop).split())
    assert f"its unpushed commit is kept on the branch qblock/trained-{unpushed}" in log, log
    assert "desktop-run: done" in log
    trained = sh(["git", "branch", "--list", "qblock/trained-*"], bare).stdout.split()
    assert sorted(trained) == sorted([branch, f"qblock/trained-{unpushed}"])
    assert commits(bare)[:3] == [commits(bare)[0], "newest labels", "newer labels"]
    assert commits(bare)[0].startswith("train: mAP50")
    assert (desktop / "models" / "best.pt").is_file() and sh(["git", "status", "--porcelain"], desktop).stdout == ""

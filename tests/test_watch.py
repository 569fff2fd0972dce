"""`qblock watch`: the desktop trains by itself when labels arrive, and the model comes back
(real git origin, folder NAS, dvc, ultralytics; the watcher is a real process, killed for real)."""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.repos import folder_nas, laptop_with_origin, mlflow_runs, sh
from tests.test_round_trip import add_workbook, clone, commits, qb

from qblock.core.errors import UserError
from qblock.core.secrets import WEBHOOK_ENV
from qblock.sync.process_lock import ProcessLock

EPOCHS = 8  # long enough to be caught mid-training


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, watcher: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if watcher is not None and watcher.poll() is not None:
            break
        time.sleep(0.1)
    shown = log.read_text(encoding="utf-8")[-4000:] if log and log.is_file() else ""
    raise AssertionError(f"{what}: not within {timeout_s} s (watcher exit {watcher and watcher.poll()})\n{shown}")


def start_watcher(repo: Path, env: dict[str, str] | None = None, every: str = "1") -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "MLFLOW_TRACKING_URI")} | (env or {})
    full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full['PATH']}"
    return subprocess.Popen([sys.executable, "-m", "qblock", "watch", "--every", every], cwd=repo, env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def rounds_started(log: Path) -> int:
    return log.read_text(encoding="utf-8").count(": desktop-run") if log.is_file() else 0


def stop(watcher: subprocess.Popen) -> int:
    os.killpg(watcher.pid, signal.SIGTERM)  # what systemd or a log-off sends
    return watcher.wait(timeout=120)


@pytest.mark.slow
def test_the_desktop_trains_by_itself_and_the_model_comes_back(tmp_path, webhook):
    url, received = webhook
    nas = folder_nas(tmp_path)
    laptop, bare = laptop_with_origin(tmp_path, [str(nas)], EPOCHS)
    app = tmp_path / "app"
    qb("demo-data", str(app), "--documents", "3", "--pages", "2", cwd=laptop)
    qb("publish", "--app", str(app), cwd=laptop)
    desktop = clone(bare, tmp_path / "desktop", [str(nas)])
    log = desktop / ".qblock" / "watch.log"

    # 1. the labels arrive; nobody is at the desktop
    watcher = start_watcher(desktop, {WEBHOOK_ENV: url})
    wait_for(lambda: commits(bare)[0].startswith("train: mAP50"), 300, "the watcher's model on the origin",
             watcher, log)
    wait_for(lambda: [m for m in received if m.get("status") == "trained"], 30, "the message", watcher, log)
    trained = [m for m in received if m.get("status") == "trained"]
    assert len(trained) == 1 and not [m for m in received if m.get("status") == "finished"], received  # one message
    assert "champion" in trained[0]["text"] and "pull-model --if-newer" in trained[0]["text"], trained[0]
    assert trained[0]["metrics"]["val_pages"] >= 1 and trained[0]["commit"] == sh(
        ["git", "rev-parse", "HEAD"], bare).stdout.strip()

    # 2. the laptop: the newest model, only when there is one
    status = qb("status", cwd=laptop)
    assert "a newer model is on the NAS" in status and "qblock pull-model" in status, status
    assert "pull-model: models/best.pt" in qb("pull-model", "--if-newer", cwd=laptop)
    assert (laptop / "models" / "best.pt").read_bytes() == (desktop / "models" / "best.pt").read_bytes()
    again = qb("pull-model", "--if-newer", cwd=laptop)
    assert "is the newest (trained at commit" in again, again
    status = qb("status", cwd=laptop)
    assert "origin: this is the newest model" in status and "trained at commit" in status, status

    # 3. publishing the same labels again commits nothing, and the watcher trains nothing
    before = commits(bare)
    assert "committed" not in qb("publish", cwd=laptop)
    checks = log.read_text().count("\n")
    time.sleep(6)  # several looks at the origin
    assert commits(bare) == before and rounds_started(log) == 1, log.read_text()[-3000:]
    assert watcher.poll() is None and log.read_text().count("\n") - checks < 3  # an idle watcher logs once

    # 4. new labels; the power goes mid-training; the watcher starts again and finishes the same training
    add_workbook(app, 2)
    qb("publish", cwd=laptop)
    checkpoints = desktop / ".qblock" / "checkpoints"

    def mid_training() -> bool:
        tables = list(checkpoints.glob("*/results.csv"))
        return bool(tables) and len(tables[0].read_text().strip().splitlines()) >= 3 and \
            bool(list(checkpoints.glob("*/weights/last.pt")))

    wait_for(mid_training, 300, "the second training under way", watcher, log)
    os.killpg(watcher.pid, signal.SIGKILL)  # the watcher, desktop-run, dvc repro and the training: all gone
    watcher.wait()
    assert commits(bare)[0].startswith("labels: 8 pages")  # nothing half-done reached the origin
    assert "origin: this is the newest model" in qb("status", cwd=laptop)
    assert json.loads((desktop / ".qblock" / "watch.json").read_text())["running"]  # the round is remembered

    watcher = start_watcher(desktop, {WEBHOOK_ENV: url})
    wait_for(lambda: commits(bare)[0].startswith("train: mAP50"), 300, "the resumed training pushed", watcher, log)
    text = log.read_text()
    assert "took over the lock of a watcher that is gone" in text and "was interrupted; finishing it" in text
    assert "desktop-run: finishing the run interrupted at commit" in text
    assert "train: resuming the interrupted training from epoch" in text, text[-4000:]
    assert len((desktop / "runs" / "train" / "results.csv").read_text().strip().splitlines()) == EPOCHS + 1
    assert sum(c.startswith("train: mAP50") for c in commits(bare)) == 2  # one per labels commit, none twice
    assert len(mlflow_runs(desktop)) == 2  # the resumed training continued its run
    proposed = qb("propose", "--if-newer", cwd=laptop)  # the app's button: the newest model, then proposals
    assert "pull-model: models/best.pt" in proposed and "page(s) proposed" in proposed, proposed
    assert (laptop / "models" / "best.pt").read_bytes() == (desktop / "models" / "best.pt").read_bytes()

    # 5. a round that fails is reported once, and waits for a new commit
    model_conf = laptop / "conf" / "model" / "yolov8n.yaml"
    model_conf.write_text(model_conf.read_text().replace("weights: auto", "weights: weights/missing.pt"))
    qb("params", cwd=laptop)
    sh(["git", "commit", "-qam", "start from weights that are not there"], laptop)
    sh(["git", "push", "-q"], laptop)
    wait_for(lambda: [m for m in received if m.get("status") == "failed"], 300, "the failure reported", watcher, log)
    rounds = rounds_started(log)
    time.sleep(5)
    failed = [m for m in received if m.get("status") == "failed"]
    assert len(failed) == 1 and "weights/missing.pt not found" in failed[0]["text"], failed
    assert rounds_started(log) == rounds and watcher.poll() is None  # not retried, still watching
    doctor = sh([sys.executable, "-m", "qblock", "doctor"], desktop, check=False)
    assert doctor.returncode == 1 and "watcher: running" in doctor.stdout and "failed" in doctor.stdout, doctor.stdout

    assert stop(watcher) == 130
    assert not (desktop / ".qblock" / "watch.lock").exists()
    assert "watcher: not running" in sh([sys.executable, "-m", "qblock", "doctor"], desktop, check=False).stdout


def test_an_unreachable_origin_makes_the_watcher_wait_not_exit(tmp_path):
    nas = folder_nas(tmp_path)
    laptop, bare = laptop_with_origin(tmp_path, [str(nas)])
    desktop = clone(bare, tmp_path / "desk top's", [str(nas)])
    log = desktop / ".qblock" / "watch.log"
    away = tmp_path / "origin asleep.git"
    bare.rename(away)  # the origin does not answer

    watcher = start_watcher(desktop)
    wait_for(lambda: log.is_file() and log.read_text().count("retrying in") >= 3, 60, "three tries", watcher, log)
    waits = [float(line.rsplit("retrying in ", 1)[1].split()[0]) for line in log.read_text().splitlines()
             if "retrying in" in line]
    assert waits[:3] == [2, 4, 8], waits  # backoff
    assert watcher.poll() is None  # waiting, not exited
    assert "git fetch" in log.read_text()
    doctor = sh([sys.executable, "-m", "qblock", "doctor"], desktop, check=False).stdout
    assert "the origin or NAS has not answered since" in doctor, doctor

    away.rename(bare)  # back: the first round of a fresh clone runs (and fails: nobody published labels yet)
    wait_for(lambda: "the origin and the NAS answer again" in log.read_text(), 60, "recovery", watcher, log)
    wait_for(lambda: "waiting for a new commit" in log.read_text(), 60, "the round done", watcher, log)
    assert rounds_started(log) == 1 and "failed: error: data/dataset_root: no labeled pages here" in log.read_text()
    assert stop(watcher) == 130

    # started the way the printed systemd service starts it (its ExecStart, in its WorkingDirectory)
    unit = qb("watch", "--print-task", "systemd", cwd=desktop)
    fields = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert Path(fields["WorkingDirectory"]) == desktop.resolve()
    command = shlex.split(fields["ExecStart"])
    assert Path(command[0]).is_absolute() and command[1:] == ["watch", "--every", "300"]
    once = subprocess.run([*command, "--once"], cwd=fields["WorkingDirectory"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}, timeout=120)
    assert once.returncode == 0, once.stdout + once.stderr
    assert "failed (error: data/dataset_root: no labeled pages here" in once.stderr and rounds_started(log) == 1

    # the Windows task and the launchd agent
    task = qb("watch", "--print-task", "windows", cwd=desktop)
    assert "Register-ScheduledTask -TaskName 'qblock watch'" in task
    assert f"-WorkingDirectory '{str(desktop.resolve()).replace(chr(39), chr(39) * 2)}'" in task  # ' doubled
    assert f"-Execute '{command[0]}'" in task and "-Argument 'watch --every 300'" in task
    assert "-ExecutionTimeLimit ([TimeSpan]::Zero)" in task and "-AtLogOn" in task
    agent = plistlib.loads(qb("watch", "--print-task", "launchd", cwd=desktop).encode())
    assert agent["ProgramArguments"] == command and agent["WorkingDirectory"] == str(desktop.resolve())


def test_one_watcher_at_a_time_and_a_dead_ones_lock_is_taken_over(tmp_path):
    path = tmp_path / "watch.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from qblock.sync.process_lock import ProcessLock; "
                               f"ProcessLock(Path({str(path)!r}), 'x').acquire(); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(UserError, match=f"qblock watch is already running here \\(pid {holder.pid}"):
        ProcessLock(path, "qblock watch").acquire()
    holder.kill()
    holder.wait()
    lock = ProcessLock(path, "qblock watch")
    lock.acquire()  # its process is gone: stale
    assert lock.taken_over and lock.taken_over["pid"] == holder.pid
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()

    # a pid that now belongs to another process (ours, started earlier than recorded) is not the holder
    path.write_text(json.dumps({"pid": os.getpid(), "started": time.time() + 1000, "host": None}))
    again = ProcessLock(path, "qblock watch")
    again.acquire()
    assert again.taken_over is not None
    again.release()


def test_the_watcher_never_trains_from_a_person_s_uncommitted_changes(tmp_path, webhook):
    url, received = webhook
    nas = folder_nas(tmp_path)
    laptop, bare = laptop_with_origin(tmp_path, [str(nas)])
    desktop = clone(bare, tmp_path / "desktop", [str(nas)])
    readme = laptop / "README.md"
    readme.write_text(readme.read_text() + "\nmore\n")
    sh(["git", "commit", "-qam", "docs"], laptop)
    sh(["git", "push", "-q"], laptop)
    (desktop / "params.yaml").write_text((desktop / "params.yaml").read_text() + "\n# a person's edit\n")
    for _ in range(2):
        done = sh([sys.executable, "-m", "qblock", "watch", "--once"], desktop, env={WEBHOOK_ENV: url})
        assert "uncommitted changes (params.yaml)" in done.stderr
    assert len([m for m in received if m.get("status") == "waiting"]) == 1  # said once
    assert rounds_started(desktop / ".qblock" / "watch.log") == 0
    assert sh(["git", "log", "-1", "--format=%s"], desktop).stdout.strip() == "smoke"  # not even pulled


def test_the_watch_log_rotates_in_the_projects_qblock_folder(tmp_path, monkeypatch):
    from qblock.services import watch

    monkeypatch.setattr(watch, "LOG_BYTES", 2_000)
    log = watch.make_log(tmp_path, to_terminal=False)
    for n in range(400):
        log.info(f"check {n}: up to date at 0123456")
    for handler in list(log.handlers):
        handler.close()
    logs = sorted(p.name for p in (tmp_path / ".qblock").glob("watch.log*"))
    assert logs == ["watch.log", *(f"watch.log.{n}" for n in range(1, watch.LOG_BACKUPS + 1))]
    assert all(p.stat().st_size <= 2_100 for p in (tmp_path / ".qblock").glob("watch.log*"))
    assert "check 399" in (tmp_path / ".qblock" / "watch.log").read_text()


def test_the_watchers_state_is_typed_and_an_odd_file_does_not_stop_doctor(tmp_path, console):
    """`.qblock/watch.json` read back as the types the watcher wrote; a field of the wrong shape (an older
    qblock's file, a person's edit) keeps its default instead of a traceback in `qblock doctor`."""
    from qblock.services.doctor import check_watcher
    from qblock.services.watch_state import STATE, Failure, Running, Trained, WatchState, read_state, write_state

    assert read_state(tmp_path) is None and check_watcher(tmp_path) == []
    state = WatchState(pid=12, last_check="2026-12-06 10:00:00", handled=["a" * 40], running=Running("b" * 40, "t"),
                       failed=Failure("c" * 40, "t2", "validate failed"), trained=[Trained("d" * 40, "e" * 40, "t3")])
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    (check,) = check_watcher(tmp_path)
    assert not check.ok and "ccccccc failed at t2: validate failed" in check.detail
    assert "last trained ddddddd -> eeeeeee" in check.detail and "interrupted while training bbbbbbb" in check.detail

    (tmp_path / STATE).write_text(json.dumps({"pid": "x", "handled": "abc", "running": {"since": "t"},
                                              "failed": [1], "trained": [{"labels": 3}, {"labels": "f", "result": "g"}],
                                              "dirty": 5}), encoding="utf-8")
    odd = read_state(tmp_path)
    assert odd == WatchState(trained=[Trained("f", "g")])
    (check,) = check_watcher(tmp_path)
    assert check.ok and "last trained f -> g" in check.detail

"""`qblock watch`: the desktop's hands-free loop.

Every few minutes it fetches the git origin. When the origin's branch has a commit this
machine has not handled (new labels from `publish`, a conf/ change), it runs one `desktop-run`
(pull, dvc repro, commit, push data, push the commit) and sends one message with what was
trained, the metrics and the champion decision. The rules:

- one watcher per project (`.qblock/watch.lock`) and one round at a time (desktop-run's own
  lock); a lock whose process died (a crash, a reboot) is taken over;
- never twice for a commit: the state (`.qblock/watch.json`) remembers the commits it handled
  (a fresh clone's checkout is not one of them: its first round trains it), and a round that
  finds nothing to train commits nothing;
- never from a tree with a person's uncommitted changes: it says so once and waits;
- an origin or NAS that does not answer is logged and retried with backoff, never a crash;
- a round that fails is reported once and not retried until a new commit arrives;
- a round stopped midway (Ctrl+C, a reboot) is finished at the next start, the training
  resuming from its checkpoint.

Everything goes to `.qblock/watch.log` (rotated) as well as the terminal.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from qblock.core import notify
from qblock.core.errors import UserError
from qblock.services.watch_state import Failure, Running, Trained, WatchState, read_state, write_state
from qblock.sync import model_version
from qblock.sync.commands import run, tools_env
from qblock.sync.process_lock import ProcessLock
from qblock.sync.remote import remote_url, require_remote
from qblock.sync.round_trips import RUN_LOCK, head, person_changes

LOCK = Path(".qblock") / "watch.lock"
LOG = Path(".qblock") / "watch.log"
MESSAGES = Path(".qblock") / "watch-messages.jsonl"
LOG_BYTES, LOG_BACKUPS = 1_000_000, 5  # watch.log and five older ones: 6 MB at most
MAX_WAIT_S = 1800  # the longest backoff when the origin or NAS does not answer
UNREACHABLE_NOTIFY_S = 6 * 3600  # say so (once) when they have not answered for this long
KEPT_ROUNDS = 50

# what a tick ended with; `qblock watch --once` exits with these
IDLE, TRAINED, FAILED, UNREACHABLE, WAITING = "idle", "trained", "failed", "unreachable", "waiting"
EXIT_CODES = {IDLE: 0, TRAINED: 0, WAITING: 0, FAILED: 1, UNREACHABLE: 75}


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def running_watcher(root: Path) -> dict[str, Any] | None:
    """The live watcher of this project, as its lock records it; None when none runs."""
    return ProcessLock(root / LOCK, "qblock watch").holder()


def make_log(root: Path, to_terminal: bool = True) -> logging.Logger:
    log = logging.getLogger(f"qblock.watch.{root}")
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    (root / LOG).parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.handlers.RotatingFileHandler(root / LOG, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS,
                                                        encoding="utf-8")
    handlers: list[logging.Handler] = [file_handler]
    if to_terminal:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
    return log


def _notify_params(root: Path):
    from qblock.config.schema import NotifyParams, load_params

    try:
        return load_params(root).notify
    except UserError:  # a broken params.yaml must not silence the report of a failure
        return NotifyParams(None, 10.0)


class Watcher:
    def __init__(self, root: Path, every_s: float, log: logging.Logger) -> None:
        self.root, self.every_s, self.log = root, every_s, log
        self.state = read_state(root) or WatchState()
        self.misses = 0  # consecutive ticks the origin or NAS did not answer
        self.quiet_about: str | None = None  # what was last logged as "nothing to do", not to repeat it

    # -- state and messages

    def save(self) -> None:
        self.state.pid = os.getpid()
        self.state.last_check = now()
        write_state(self.root, self.state)

    def say(self, text: str, quiet: bool = False) -> None:
        """Log ``text``; with ``quiet``, only when it differs from the last quiet line (an idle loop logs once)."""
        if quiet and text == self.quiet_about:
            return
        self.quiet_about = text if quiet else None
        self.log.info(text)

    def send(self, payload: dict[str, Any]) -> None:
        buffer = io.StringIO()  # notify's warnings (an unreachable webhook) go to the log
        notify.send(_notify_params(self.root), payload, Console(file=buffer, width=200))
        if said := buffer.getvalue().strip():
            self.log.info(said)

    # -- one check

    def tick(self) -> str:
        root = self.root
        try:
            model_version.fetch(root)
        except UserError as exc:
            return self.unreachable(f"origin: {exc}")
        upstream = run(["git", "rev-parse", "@{upstream}"], root, "git rev-parse").stdout.strip()
        ahead = int(run(["git", "rev-list", "--count", "@{upstream}..HEAD"], root, "git rev-list").stdout.strip())
        here = head(root)
        running = self.state.running
        if upstream == here and not ahead and not running and upstream in self.state.handled:
            self.reachable()
            self.say(f"up to date at {upstream[:7]}; checking every {self.every_s:g} s", quiet=True)
            return IDLE
        failed = self.state.failed
        if failed is not None and failed.commit == upstream and not running:
            self.reachable()
            self.say(f"the round for {upstream[:7]} failed ({failed.error}); waiting for a new commit", quiet=True)
            return IDLE
        if changes := person_changes(root):
            return self.dirty(changes)
        if holder := ProcessLock(root / RUN_LOCK, "a desktop-run").holder():
            self.say(f"a desktop-run is under way here (pid {holder['pid']}); waiting for it", quiet=True)
            return WAITING
        try:
            require_remote(root)
        except UserError as exc:
            return self.unreachable(f"NAS: {exc}")
        self.reachable()
        return self.round(upstream)

    def round(self, upstream: str) -> str:
        """One desktop-run, its output into the log; the outcome remembered and reported."""
        root = self.root
        resuming = self.state.running.commit if self.state.running else None
        subject = run(["git", "log", "-1", "--format=%s", upstream], root, "git log").stdout.strip()
        self.state.running = Running(upstream, now())
        self.state.dirty = None
        self.save()
        self.log.info(f"round for {upstream[:7]} \"{subject}\"" +
                      (f" (finishing the one interrupted at {resuming[:7]})" if resuming else "") + ": desktop-run")
        messages = root / MESSAGES
        messages.unlink(missing_ok=True)
        env = tools_env() | {notify.COLLECT_ENV: str(messages), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        tail: collections.deque[str] = collections.deque(maxlen=12)
        with subprocess.Popen([sys.executable, "-m", "qblock", "desktop-run"], cwd=root, env=env, text=True,
                              encoding="utf-8", errors="replace", stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) as child:
            assert child.stdout is not None
            for raw in child.stdout:
                line = raw.rstrip("\n").split("\r")[-1].rstrip()  # a progress bar: its last state
                if line:
                    self.log.info(f"  | {line}")
                    tail.append(line)
            code = child.wait()
        said = [json.loads(line) for line in messages.read_text(encoding="utf-8").splitlines() if line.strip()] \
            if messages.is_file() else []
        messages.unlink(missing_ok=True)
        if code == 0:
            return self.succeeded(upstream, subject, said)
        try:  # did the origin or the NAS go away midway? Then it is not the commit's fault: try again later
            model_version.fetch(root)
            require_remote(root)
        except UserError as exc:
            return self.unreachable(f"during the round: {exc}")
        return self.failed(upstream, subject, said, list(tail))

    def handled(self, *commits: str) -> None:
        """Remember ``commits`` as done: the watcher never runs a round for them again."""
        done = [c for c in self.state.handled if c not in commits] + list(commits)
        self.state.handled = done[-KEPT_ROUNDS * 4:]

    def succeeded(self, upstream: str, subject: str, said: list[dict[str, Any]]) -> str:
        result = head(self.root)
        self.state.running = None
        self.state.failed = None
        self.handled(upstream, result)
        if result == upstream:  # dvc repro found nothing to train: nothing committed
            self.log.info(f"nothing to train at {upstream[:7]}: the pipeline is up to date")
            self.save()
            return IDLE
        finished = next((m for m in said if m.get("status") == "finished"), {})
        trained = Trained(upstream, result, now(), finished.get("text"))
        self.state.trained = [*self.state.trained, trained][-KEPT_ROUNDS:]
        self.save()
        text = (f"qblock watch: trained {upstream[:7]} \"{subject}\" and pushed {result[:7]}. "
                f"{finished.get('text', '')} On the laptop: qblock pull-model --if-newer").replace("  ", " ")
        self.log.info(text)
        self.send({"status": "trained", "text": text, "labels_commit": upstream, "commit": result,
                   "metrics": finished.get("metrics"), "model": finished.get("model")})
        return TRAINED

    def failed(self, upstream: str, subject: str, said: list[dict[str, Any]], tail: list[str]) -> str:
        stage = next((m for m in said if m.get("status") == "failed"), None)
        errors = [t for t in tail if t.startswith("error: ") and "failed (above)" not in t]  # the first says why
        error = stage["text"] if stage else errors[0] if errors else tail[-1] if tail else "no output"
        self.state.running = None
        self.state.failed = Failure(upstream, now(), error)
        self.save()
        text = (f"qblock watch: the round for {upstream[:7]} \"{subject}\" failed: {error}. Nothing was pushed; "
                f"the watcher waits for a new commit (details: {LOG.as_posix()} on the desktop)")
        self.log.info(text)
        self.send({"status": "failed", "text": text, "labels_commit": upstream, "error": "\n".join(tail)})
        return FAILED

    def dirty(self, changes: list[str]) -> str:
        text = (f"qblock watch: the desktop's work tree has uncommitted changes ({', '.join(changes[:5])}); "
                "no training until they are committed or undone")
        self.say(text, quiet=True)
        if self.state.dirty != changes:  # sent once per set of changes
            self.send({"status": "waiting", "text": text, "changes": changes})
            self.state.dirty = changes
            self.save()
        return WAITING

    def unreachable(self, why: str) -> str:
        self.misses += 1
        since = self.state.unreachable_since = self.state.unreachable_since or now()
        self.save()
        self.log.info(f"{why.splitlines()[0]}; retrying in {self.wait_s(UNREACHABLE):g} s")
        started = time.mktime(time.strptime(since, "%Y-%m-%d %H:%M:%S"))
        if time.time() - started > UNREACHABLE_NOTIFY_S and not self.state.unreachable_notified:
            self.send({"status": "unreachable", "text": f"qblock watch: the origin or NAS has not answered since "
                                                        f"{since}: {why.splitlines()[0]}"})
            self.state.unreachable_notified = True
            self.save()
        return UNREACHABLE

    def reachable(self) -> None:
        if self.misses or self.state.unreachable_since:
            self.log.info("the origin and the NAS answer again")
        self.misses = 0
        self.state.unreachable_since = None
        self.state.unreachable_notified = False
        self.save()

    def wait_s(self, outcome: str) -> float:
        if outcome == UNREACHABLE:
            return min(self.every_s * 2 ** self.misses, max(MAX_WAIT_S, self.every_s))
        return self.every_s


def _stop_on_sigterm() -> None:
    """A service manager's stop (SIGTERM) is a Ctrl+C: the round in progress is kept for the next start."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, handler)


def check_ready(root: Path) -> None:
    """What the watcher needs before it starts: a git origin to follow and a NAS remote."""
    if run(["git", "rev-parse", "--abbrev-ref", "@{upstream}"], root, "git rev-parse", check=False).returncode:
        raise UserError("this branch follows no branch on a git origin: `git push -u origin HEAD` (or clone the "
                        "project from the origin) before watching it")
    if remote_url(root) is None:
        raise UserError("no NAS remote on this machine: run `qblock remote set PATH_OR_SSH_URL` first")


def watch(root: Path, every_s: float, once: bool = False, to_terminal: bool = True) -> int:
    """Run the loop (or one check with ``once``); the exit code."""
    check_ready(root)
    log = make_log(root, to_terminal)
    lock = ProcessLock(root / LOCK, "qblock watch")
    lock.acquire()
    _stop_on_sigterm()
    try:
        if lock.taken_over is not None:
            log.info(f"took over the lock of a watcher that is gone (pid {lock.taken_over.get('pid', '?')})")
        watcher = Watcher(root, every_s, log)
        if running := watcher.state.running:
            log.info(f"the round for {running.commit[:7]} was interrupted; finishing it")
        log.info(f"watching {root} (pid {os.getpid()}): every {every_s:g} s; log in {LOG.as_posix()}")
        while True:
            try:
                outcome = watcher.tick()
            except UserError as exc:  # git refusing something unforeseen: logged, tried again later, never a crash
                log.info(f"check failed: {exc}")
                watcher.misses += 1
                outcome = UNREACHABLE
            if once:
                return EXIT_CODES[outcome]
            time.sleep(watcher.wait_s(outcome))
    except KeyboardInterrupt:
        running = (read_state(root) or WatchState()).running
        log.info("stopped" + (f"; the round for {running.commit[:7]} resumes at the next start" if running
                              else ""))
        return 130
    finally:
        lock.release()
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()

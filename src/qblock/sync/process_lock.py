"""A lock file that says which process holds it, and that a crashed holder does not leave stuck.

The file is created exclusively (`O_EXCL`: one winner, on any OS) and holds the owner's pid, the
time that process started and the host. A lock whose process is gone (killed, a reboot), or
whose pid now belongs to another process started later, is stale and is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil

from qblock.core.errors import UserError


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # alive, another user's: not ours to call stale
        return -1.0


class ProcessLock:
    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self.taken_over: dict[str, Any] | None = None  # the stale holder this lock replaced, if any

    def holder(self) -> dict[str, Any] | None:
        """The live process holding the lock, as recorded; None when free or stale."""
        try:
            held = json.loads(self.path.read_text(encoding="utf-8"))
            pid, started = int(held["pid"]), float(held["started"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # half written by a process that died writing it
        if held.get("host") not in (None, socket.gethostname()):  # a copied project folder: not this machine's
            return None
        now = _started(pid)
        if now is None or (now >= 0 and abs(now - started) > 1.0):
            return None
        return held

    def acquire(self) -> None:
        me = os.getpid()
        record = {"pid": me, "started": _started(me), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                held = self.holder()
                if held is not None:
                    raise UserError(f"{self.what} is already running here (pid {held['pid']}, since "
                                    f"{held.get('since', '?')}; lock {self.path}). One at a time: wait for it, "
                                    "or stop that process.") from None
                try:
                    self.taken_over = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    self.taken_over = {}
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            return
        raise UserError(f"{self.path}: could not take the lock (another process keeps taking it)")

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

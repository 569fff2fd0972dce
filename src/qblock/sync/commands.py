"""The git and dvc commands qblock runs: with this interpreter's tools first on PATH, and, when one
fails, an error that says what it said (the stage's own `error:` lines first) and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from qblock.core.errors import UserError


def tools_env() -> dict[str, str]:
    """This process's environment with the interpreter's scripts folder first on PATH.

    The pipeline's stages are `qblock ...` commands that dvc finds on the PATH. Run as
    `.venv/bin/qblock` (or `.venv\\Scripts\\qblock.exe` from a scheduled task, a shortcut, an IDE
    button) without activating the environment, that folder is not on it.
    """
    folders = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    path = os.environ.get("PATH", "")
    first = [f for i, f in enumerate(folders) if f and f not in folders[:i]]
    return os.environ | {"PATH": os.pathsep.join([*first, path] if path else first)}


def run(args: list[str], root: Path, what: str, hint: str = "", check: bool = True) -> subprocess.CompletedProcess:
    """Run git or dvc; on failure a UserError with the command, its last words and a hint."""
    command = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else args
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, env=tools_env())
    if check and result.returncode != 0:
        cause = known_cause(f"{result.stdout}\n{result.stderr}")
        words = [line for line in last_words(result) if "rwlock" not in line]  # never advise deleting DVC's lock
        said = "\n  ".join(words)
        hint = cause or hint
        raise UserError(f"{what} failed (`{' '.join(args)}`):\n  {said}" + (f"\n{hint}" if hint else ""))
    return result


DISK_FULL = "A disk is full"


def known_cause(said: str) -> str | None:
    """What to do about a failure whose cause git's or DVC's words make plain, or None."""
    if "Unable to acquire lock" in said or "is being blocked by" in said:
        return ("Another qblock or dvc command is working in this project (a publish, a desktop-run, the "
                "watcher): DVC holds its lock until that one ends. Wait for it, then run this again.")
    if "No space left on device" in said or "Disk quota exceeded" in said:
        return (f"{DISK_FULL}: the NAS, or this machine's DVC cache. Free space there, then run this again "
                "(an interrupted push resumes; nothing half-written is kept).")
    return None


def last_words(result: subprocess.CompletedProcess, errors: int = 12, tail: int = 6) -> list[str]:
    """What a failed git or dvc command said: the stages' own `error:` lines (which name the file; a stage
    run by `dvc repro` prints them on stdout), then the last lines of stderr (else stdout)."""
    named = [line for line in (result.stdout or "").splitlines() if line.startswith("error:")]
    more = [f"... and {len(named) - errors} more errors (the stage's report file has them all)"] \
        if len(named) > errors else []
    last = [line for line in (result.stderr or result.stdout or "").strip().splitlines()[-tail:] if line not in named]
    return named[:errors] + more + last

"""The NAS as DVC remote: set it, probe it, ask what it holds; and how qblock runs git and dvc.

The remote is configured per machine in `.dvc/config.local` (never committed): the laptop may
see the NAS as `/Volumes/qblock-store`, the desktop as `Z:\\qblock-store`, either as `ssh://`.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

from rich.console import Console

from qblock.core.errors import UserError
from qblock.sync.commands import run

REMOTE = "nas"
PROBE_TIMEOUT_S = 6  # for the remote's answer; with Python and dvc starting, a command fails within 10 s
# `remote set` leaves this file in the store: a store folder without it (or without DVC's `files/`,
# for one set by an older qblock) is a mount point whose share is not mounted, or a wrong path
MARKER = ".qblock-remote"


class NotMounted(Exception):
    """The remote's folder is missing or holds no store: every command but `remote set` stops there."""


def _is_url(location: str) -> bool:
    return "://" in location


def probe(root: Path, url: str, timeout_s: float = PROBE_TIMEOUT_S, create: bool = False) -> None:
    """Check that the configured remote (``url``, for the messages) is reachable and writable:
    write, read back, delete. The clock starts once dvc is imported: ``timeout_s`` is the time
    the remote gets to answer.

    Only ``create`` (`remote set`) makes the store's folder and marks it. Otherwise a missing
    folder, or one with neither the marker nor DVC's layout, is a NAS that is not mounted: writing
    there would fill the local disk and tell the other machine its data is pushed.
    """
    from dvc.repo import Repo

    outcome: dict[str, object] = {}

    def attempt() -> None:
        try:
            with Repo(str(root)) as repo:
                remote = repo.cloud.get_remote(REMOTE)
                fs, path = remote.fs, remote.path
                marker = fs.join(path, MARKER)
                if create:
                    fs.makedirs(path, exist_ok=True)
                elif not fs.isdir(path):
                    raise NotMounted("the folder does not exist")
                if not fs.exists(marker):
                    if not create and not fs.exists(fs.join(path, "files")):
                        raise NotMounted(f"the folder holds no qblock store (no {MARKER}, which `qblock remote set` "
                                         "leaves there, and no DVC data)")
                    fs.pipe_file(marker, b"a qblock DVC remote: `qblock remote set` made it; keep this file\n")
                target = fs.join(path, f".qblock-probe-{uuid.uuid4().hex}")
                fs.pipe_file(target, b"qblock")
                if fs.cat_file(target) != b"qblock":
                    raise OSError("what was written did not read back")
                fs.rm_file(target)
            outcome["ok"] = True
        except Exception as exc:  # any failure of the remote's filesystem is the answer
            outcome["error"] = exc

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if "ok" in outcome:
        return
    if isinstance(outcome.get("error"), NotMounted):
        raise UserError(f"remote {url}: the NAS is not mounted: {outcome['error']}. Mount the share (or map the "
                        f"drive) and run this again; nothing was pushed or committed. If this really is a new, "
                        f"empty store, `qblock remote set {url}` makes it.")
    if worker.is_alive():
        raise UserError(f"remote {url}: no answer within {timeout_s:g} s. Is the NAS on and reachable "
                        "(mounted, or its SSH port open)? One waking from sleep may need a second try. "
                        "Nothing was changed locally.")
    raise UserError(f"remote {url}: not reachable or not writable: {outcome['error']}")


def dvc_config(root: Path):
    """DVC's own reader and writer of `.dvc/config` and `.dvc/config.local` (in-process: no dvc to start)."""
    from dvc.config import Config, ConfigError

    if not (root / ".dvc").is_dir():
        raise UserError(f"{root}: not a DVC repository (no .dvc folder); run this in the qblock project")
    try:
        return Config(dvc_dir=str(root / ".dvc"))
    except ConfigError as exc:
        raise UserError(f"{root / '.dvc'}: {exc}") from None


def remote_url(root: Path) -> str | None:
    """The NAS remote's URL, from every config level as DVC merges them; None when there is none."""
    url = dvc_config(root)["remote"].get(REMOTE, {}).get("url")
    return str(url) if url else None


def set_remote(root: Path, location: str, console: Console, timeout_s: float = PROBE_TIMEOUT_S,
               keyfile: Path | None = None) -> None:
    """Make ``location`` this machine's default remote, if it answers; else change nothing."""
    if not _is_url(location):
        path = Path(location).expanduser()
        if not path.parent.is_dir():  # never create a mount point on the local disk by mistake
            raise UserError(f"{path.parent} does not exist: is the NAS mounted (or the drive mapped)? "
                            "Nothing was changed.")
        location = str(path.resolve())
    if keyfile is not None and not location.startswith("ssh://"):
        raise UserError(f"--keyfile is for ssh:// remotes; {location} is not one. Nothing was changed.")
    from dvc.config import ConfigError

    config_levels = dvc_config(root)
    local = root / ".dvc" / "config.local"
    before = local.read_text(encoding="utf-8") if local.is_file() else None
    # what `dvc remote add --local --default --force` and `dvc remote modify --local` write, without
    # starting dvc twice more: the whole command stays within 10 s when the NAS does not answer
    try:
        with config_levels.edit("local") as config:  # validated before it is written
            config["remote"][REMOTE] = {"url": location}
            if keyfile is not None:
                config["remote"][REMOTE]["keyfile"] = str(keyfile.expanduser().resolve())
            config["core"]["remote"] = REMOTE
    except ConfigError as exc:
        raise UserError(f"{location}: DVC does not take this as a remote ({exc}). Nothing was changed.") from None
    try:
        probe(root, location, timeout_s, create=True)
    except UserError:
        if before is None:
            local.unlink(missing_ok=True)
        else:
            local.write_text(before, encoding="utf-8")
        raise
    console.print(f"remote: {REMOTE} = {location} (this machine only, in .dvc/config.local); reachable and writable")


def require_remote(root: Path) -> str:
    """The remote's URL, once it has answered the probe."""
    url = remote_url(root)
    if url is None:
        raise UserError("no NAS remote on this machine: run `qblock remote set PATH_OR_SSH_URL` first")
    probe(root, url)
    return url


# `dvc status --cloud`: "deleted" is on the NAS but not in this machine's cache (a laptop that
# pulled only the model lacks the training pictures): on the NAS, so fine. "new" (only here) and
# "missing" (nowhere), or any other word a DVC version may use, mean the NAS lacks it.
ON_REMOTE_ONLY = "deleted"


def missing_from_remote(status: dict[str, str]) -> dict[str, str]:
    """The entries of `dvc status --cloud --json` that the NAS does not hold."""
    return {path: state for path, state in status.items() if state != ON_REMOTE_ONLY}


def not_on_remote(root: Path) -> dict[str, str]:
    """What this commit needs that the NAS does not hold (empty: everything is there).

    When DVC cannot answer, a UserError says the answer is not known: never "all there".
    """
    status = run(["dvc", "status", "--cloud", "--remote", REMOTE, "--json"], root, "checking the remote", check=False)
    said = (status.stderr or status.stdout).strip().splitlines()[-3:]
    if status.returncode != 0:
        raise UserError("cannot tell whether this commit's data is on the NAS: `dvc status --cloud` failed:\n  "
                        + "\n  ".join(said))
    try:
        answer = json.loads(status.stdout or "{}")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise UserError("cannot tell whether this commit's data is on the NAS: `dvc status --cloud` did not "
                        f"answer in JSON: {status.stdout.strip()[-200:]}")
    return missing_from_remote(answer)

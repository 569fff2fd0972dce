"""Pushing to an SSH NAS: the objects it lacks in one stream, then `dvc push` to confirm.

Where the time of a first `dvc push` over SSH goes (bench/sync.py, profiled): DVC sends each
object on its own through SFTP (open, write, close, rename: several round trips, and Python's
SSH stack doing the crypto on one core), so 10,000 pages took 20x as long as `rsync -a`. More
jobs did not help. Here the objects this commit needs and the NAS lacks go as one tar stream
through one `ssh` connection, into a folder of their own on the NAS, and from there into DVC's
layout (`files/md5/ab/cdef...`) by `mv`, a rename per object: an object is either whole under its
name or not there, as with DVC's own uploads. Folder listings (`.dir` objects) are left to the
`dvc push` that follows, which uploads them last, as DVC does, once their files are there; it
also checks that everything is on the NAS and sends anything the stream did not.

A stream that is killed leaves its folder in `.qblock-incoming/` on the NAS; the next push
removes folders older than an hour. Where `ssh` or `tar` is missing, or the NAS does not let
this machine log in by key, plain `dvc push` does the whole job, as before.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from qblock.sync.remote import REMOTE, dvc_config

INCOMING = ".qblock-incoming"
STALE_AFTER_MIN = 60
CONNECT_TIMEOUT_S = 15


class StreamUnavailable(Exception):
    """The fast path cannot be used here; `dvc push` alone does the job."""


def ssh_target(root: Path) -> tuple[list[str], str] | None:
    """(the `ssh` command line for the NAS, the store's path on it) for an ssh:// remote; None for others."""
    section = dvc_config(root)["remote"].get(REMOTE, {})
    url = str(section.get("url") or "")
    if not url.startswith("ssh://"):
        return None
    parts = urlsplit(url)
    user = section.get("user") or parts.username
    port = section.get("port") or parts.port
    host = parts.hostname or ""
    known_hosts = root / ".qblock" / "known_hosts"  # this project's, never the user's own file
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    command = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
               "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}",
               "-o", "LogLevel=ERROR"]
    if port:
        command += ["-p", str(port)]
    if section.get("keyfile"):
        command += ["-i", str(section["keyfile"])]
    command.append(f"{user}@{host}" if user else host)
    return command, parts.path or "/"


def _needed(root: Path, store: str) -> dict[str, Path]:
    """This commit's objects that the push would send, except folder listings: {path under the store: cache file}."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        local = repo.cache.local
        remote = repo.cloud.get_remote_odb(REMOTE, "push", hash_name="md5")
        base = store.rstrip("/") + "/"
        found = {}
        for infos in repo.used_objs(push=True).values():
            for info in infos:
                if not info.value or info.isdir:
                    continue
                path = Path(local.oid_to_path(info.value))
                where = str(remote.oid_to_path(info.value))
                if path.is_file() and where.startswith(base):
                    found[where[len(base):]] = path
        return found


def _as_uploaded(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """As DVC uploads objects: readable and writable by the NAS user, owned by whoever extracts them."""
    member.mode, member.uid, member.gid, member.uname, member.gname = 0o644, 0, 0, "", ""
    return member


def _remote(ssh: list[str], script: str, **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([*ssh, script], capture_output=True, **kwargs)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StreamUnavailable(str(exc)) from None


def stream_missing(root: Path, console: Console) -> int:
    """Send the objects the NAS lacks in one stream; the number sent. StreamUnavailable when it cannot."""
    target = ssh_target(root)
    if target is None:
        raise StreamUnavailable("not an ssh:// remote")
    if shutil.which("ssh") is None:
        raise StreamUnavailable("no `ssh` client on this machine")
    ssh, store = target
    needed = _needed(root, store)
    if not needed:
        return 0
    quoted = shlex.quote(store)
    listing = _remote(ssh, f"mkdir -p {quoted} && cd {quoted} && "
                           f"find {INCOMING} -mindepth 1 -maxdepth 1 -mmin +{STALE_AFTER_MIN} "
                           f"-exec rm -rf {{}} + 2>/dev/null; find files -type f 2>/dev/null; true",
                      timeout=300)
    if listing.returncode != 0:
        raise StreamUnavailable(listing.stderr.decode(errors="replace").strip() or "ssh failed")
    there = set(listing.stdout.decode(errors="replace").split("\n"))
    missing = sorted(name for name in needed if name not in there)
    if not missing:
        return 0
    stage = f"{INCOMING}/{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folders = sorted({str(Path(name).parent.as_posix()) for name in missing})
    # extract into the stage, then into place one prefix folder at a time: `mv` renames each file
    moves = "; ".join(f"mkdir -p {shlex.quote(f)} && mv -f {shlex.quote(stage + '/' + f)}/* {shlex.quote(f)}/"
                      for f in folders)
    script = (f"set -e; cd {quoted}; mkdir -p {shlex.quote(stage)}; tar -xf - -C {shlex.quote(stage)}; "
              f"{moves}; rm -rf {shlex.quote(stage)}")
    console.print(f"push: {len(missing)} objects the NAS lacks, in one stream over ssh ...")
    process = subprocess.Popen([*ssh, script], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None
    try:
        with tarfile.open(fileobj=process.stdin, mode="w|", format=tarfile.PAX_FORMAT) as stream:
            for name in missing:
                stream.add(str(needed[name]), arcname=name, recursive=False, filter=_as_uploaded)
        process.stdin.close()
    except BrokenPipeError:  # the NAS side stopped: its words say why
        pass
    assert process.stderr is not None
    errors = process.stderr.read()
    process.wait()
    if process.returncode != 0:
        raise StreamUnavailable(errors.decode(errors="replace").strip() or f"ssh exited {process.returncode}")
    return len(missing)


def describe(root: Path) -> str | None:
    """For `qblock remote set`: whether pushes to this remote can take the one-stream path; None: not SSH."""
    target = ssh_target(root)
    if target is None:
        return None
    if shutil.which("ssh") is None:
        return "pushes go object by object (`dvc push`): no `ssh` client on this machine for the faster stream"
    ssh, store = target
    answer = _remote(ssh, "command -v tar >/dev/null && command -v mv >/dev/null && echo ok", timeout=60)
    if answer.returncode == 0 and answer.stdout.strip() == b"ok":
        return "pushes stream what the NAS lacks over one ssh connection, then `dvc push` confirms"
    said = answer.stderr.decode(errors="replace").strip().splitlines()[:1] or ["no tar on the NAS"]
    return f"pushes go object by object (`dvc push`): the one-stream path needs key login and tar ({said[0]})"


def push(root: Path, console: Console, run_dvc) -> None:
    """The stream where it works, then `dvc push` (``run_dvc``) for the rest and to confirm."""
    try:
        sent = stream_missing(root, console)
        if sent:
            console.print(f"push: {sent} objects streamed; dvc push checks and sends the rest ...")
    except StreamUnavailable as exc:
        if ssh_target(root) is not None:
            console.print(f"push: the one-stream path is not available ({exc}); dvc push sends each object")
    run_dvc()

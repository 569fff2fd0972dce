"""`qblock gc`: free space in this machine's DVC cache and, with `--remote`, on the NAS, without
deleting what another machine needs.

Plain `dvc gc -c` keeps only what this machine's git refs reference: run on a laptop that has not
fetched, it deletes the model the desktop pushed an hour ago. `qblock gc` first fetches the origin
(and refuses when it cannot), refuses while this machine has commits the origin lacks, then lets
DVC keep every object that any commit on any branch (the origin's included), any tag, any
experiment or the work tree references (`dvc gc --workspace --all-commits --all-experiments`).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from qblock.core.errors import UserError
from qblock.sync.commands import run
from qblock.sync.remote import REMOTE, remote_url, require_remote


def _du(folder: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def check_in_step_with_origin(root: Path) -> None:
    """Fetch every branch of the origin; refuse when that fails or when this machine has unpushed commits."""
    fetched = run(["git", "fetch", "--prune", "--tags", "origin"], root, "git fetch", check=False)
    if fetched.returncode != 0:
        said = (fetched.stderr or fetched.stdout).strip().splitlines()[:1] or ["no answer"]
        raise UserError(f"cannot reach the git origin ({said[0]}). qblock gc keeps what the origin's commits "
                        "need, so it must see them first; nothing was deleted.")
    if not run(["git", "for-each-ref", "refs/remotes/origin"], root, "git for-each-ref").stdout.strip():
        raise UserError("the git origin has no branches: push this project first (`git push -u origin HEAD`); "
                        "nothing was deleted.")
    unpushed = run(["git", "log", "--oneline", "--branches", "--not", "--remotes=origin"], root, "git log").stdout
    if unpushed.strip():
        lines = unpushed.strip().splitlines()
        raise UserError(f"{len(lines)} commit(s) here are not on the origin: " + "; ".join(lines[:5])
                        + ". Push them first (`qblock publish`, `qblock desktop-run` or `git push`): their data "
                        "must be kept too. Nothing was deleted.")


LEFTOVER_AGE_S = 3600  # a temporary file this old belongs to no push or pull still running


def nas_folder(root: Path) -> Path | None:
    """The NAS's folder when it is a mounted folder (not SSH)."""
    url = remote_url(root)
    if not url or "://" in url:
        return None
    nas = Path(url).expanduser()
    return nas if nas.is_absolute() else (root / ".dvc" / nas).resolve()  # relative to .dvc/config


def _temp_files(place: Path, newer_than: float = 0.0, older_than: float = float("inf")) -> list[Path]:
    if not place.is_dir():
        return []
    return [p for p in place.rglob("*.tmp") if p.is_file() and newer_than <= p.stat().st_mtime < older_than]


def leftover_temp_files(root: Path) -> list[Path]:
    """Half-written files that interrupted pushes, pulls or adds left (`*.tmp` among the objects, which
    never have an extension of their own), older than an hour: in this machine's cache and on a NAS
    that is a mounted folder."""
    cutoff = time.time() - LEFTOVER_AGE_S
    return sorted(p for place in (root / ".dvc" / "cache", nas_folder(root)) if place is not None
                  for p in _temp_files(place, older_than=cutoff))


def remove_partial_uploads(root: Path, since: float) -> int:
    """After a push that failed on a full disk: delete the `*.tmp` files written on a folder NAS since
    ``since`` (the push's start), which DVC leaves where its copy stopped. Any other push writing then
    failed on the same full disk, so nothing still in use is taken. Returns how many went."""
    nas = nas_folder(root)
    found = _temp_files(nas, newer_than=since - 2) if nas is not None else []  # 2 s: coarse file times
    for path in found:
        path.unlink(missing_ok=True)
    return len(found)


def collect_garbage(root: Path, remote: bool, dry_run: bool, console: Console) -> None:
    if remote:
        require_remote(root)
    check_in_step_with_origin(root)
    cache = root / ".dvc" / "cache"
    before = _du(cache) if cache.is_dir() else 0
    args = ["dvc", "gc", "--workspace", "--all-commits", "--all-experiments", "--force"]
    if remote:
        args += ["--cloud", "--remote", REMOTE]
    if dry_run:
        args.append("--dry")
    where = "this machine's cache and the NAS" if remote else "this machine's cache"
    console.print(f"gc: keeping what any commit of the origin, tag, experiment or the work tree needs; "
                  f"{'counting' if dry_run else 'deleting'} the rest in {where} ...")
    result = run(args, root, "dvc gc", "Nothing is lost by running it again.")
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip() and ("Removed" in line or "No unused" in line):
            console.print(f"gc: {line.strip().replace('Removed', 'would remove' if dry_run else 'removed')}")
    leftovers = leftover_temp_files(root)
    if leftovers:
        size = sum(p.stat().st_size for p in leftovers)
        console.print(f"gc: {'would delete' if dry_run else 'deleting'} {len(leftovers)} half-written file(s) that "
                      f"interrupted pushes or pulls left ({size / 1e6:.1f} MB)")
        for path in [] if dry_run else leftovers:
            path.unlink(missing_ok=True)
    after = _du(cache) if cache.is_dir() else 0
    if not dry_run:
        console.print(f"gc: this machine's cache {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")

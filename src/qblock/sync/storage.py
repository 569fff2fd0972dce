"""Each page on disk once: DVC's cache shares storage with the work tree where that is safe.

DVC keeps one cache object per content, but by default (`reflink,copy`) the work tree holds a copy
of it on file systems without reflinks (ext4, NTFS). A hard link instead makes the work tree's file
and the cache object one and the same, and that is only safe where nothing writes into the file in
place: an in-place write changes the cache object under its hash (DVC's read-only protection does
not stop root, or a Windows program that clears the attribute).

So, per machine (`.dvc/config.local`, never committed):

- the app writes its own folder and `qblock publish --app` mirrors it into the repo (a new file,
  then a rename: never into an old one), or no app writes here at all (the desktop, once it ran
  `desktop-run`): `hardlink,copy`, the cache and the pages share storage (not `reflink,hardlink,...`:
  where reflinks fail, DVC copies instead of trying the next type);
- otherwise the app may write straight into `paths.dataset_root` in place: `reflink,copy` (DVC's
  default), and `qblock doctor` says how to get the space back.

After a change, `dvc checkout --relink` makes the existing files follow, so `dvc status` stays clean.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from qblock.core import machine
from qblock.core.errors import UserError
from qblock.sync import app_mirror
from qblock.sync.commands import run
from qblock.sync.remote import dvc_config

SHARED = "hardlink,copy"  # the cache and the work tree share storage (DVC takes a failed reflink for a copy)
SEPARATE = "reflink,copy"  # DVC's default: copies on ext4/NTFS, copy-on-write clones on Btrfs/XFS/APFS
ROLE_KEY = "role"  # in .qblock/machine.yaml: "desktop" once desktop-run ran here


def wanted_link_type(root: Path, dataset_root: Path) -> tuple[str, str]:
    """The cache link type this machine should use, and why."""
    app = app_mirror.remembered(root)
    if app is not None and app.resolve() != (root / dataset_root).resolve():
        return SHARED, f"the app writes {app}; qblock mirrors it in with new files only"
    if machine.setting(ROLE_KEY, root) == "desktop":
        return SHARED, "no labeling app writes here (the desktop)"
    return SEPARATE, (f"the labeling app may rewrite files in {dataset_root} in place, which would change "
                      f"cached data if they were links into the cache")


def current_link_type(root: Path) -> str:
    """This repository's cache.type as `dvc config` writes it (DVC's reader returns a list)."""
    configured = dvc_config(root)["cache"].get("type") or SEPARATE
    return ",".join(configured) if isinstance(configured, list) else str(configured)


def apply_link_type(root: Path, dataset_root: Path, console: Console) -> str:
    """Set this machine's cache link type (and relink the work tree) when it should change; return it."""
    wanted, why = wanted_link_type(root, dataset_root)
    if current_link_type(root) == wanted:
        return wanted
    with dvc_config(root).edit("local") as config:
        config["cache"]["type"] = wanted
    # Outputs never built are skipped; files with unsaved changes DVC leaves alone (it never overwrites them
    # without --force): they take the new link type at their next `dvc add` or commit.
    relinked = run(["dvc", "checkout", "--relink", "--allow-missing"], root, "dvc checkout", check=False)
    said = relinked.stdout + relinked.stderr
    if relinked.returncode != 0 and "unsaved files" not in said:
        raise UserError(f"dvc checkout --relink failed after setting cache.type {wanted}:\n  "
                        + "\n  ".join(said.strip().splitlines()[-6:]))
    shared = "share storage with" if wanted == SHARED else "keep separate copies of"
    console.print(f"storage: DVC's cache and the work tree now {shared} the pages (cache.type {wanted}, "
                  f"this machine only): {why}")
    return wanted

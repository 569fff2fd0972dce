"""Where the labeling app keeps its dataset_root on this machine, and bringing it into the repo.

DVC versions folders inside the repository, while the app may write anywhere (its own folder
on the laptop, another drive). `qblock publish --app PATH` remembers PATH for this machine (in
`.qblock/machine.yaml`, never committed) and mirrors it into `paths.dataset_root` before each
publish: new and changed files are copied (by size and modification time), files the app
deleted are deleted. When the app writes straight into `paths.dataset_root`, none of this is
needed.

With an app folder remembered, `qblock propose` (and `--accept`, `--preview`), `qblock status` and
`qblock import` work in the app's folder, not in the copy. A label or proposal file that only the
copy has while the app still has its page (one accepted in the copy by an older qblock, or edited
there by hand) is a person's work: the mirror copies it back into the app's folder, never deletes it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from qblock.core import files, machine
from qblock.core.errors import UserError
from qblock.data.app_dataset import outside_links
from qblock.data.app_folder import GROUPS, GROUPS_SUFFIX, PROPOSALS, AppFolder, page_of

APP_ROOT_KEY = "app_dataset_root"


def remembered(root: Path) -> Path | None:
    value = machine.setting(APP_ROOT_KEY, root)
    return Path(value) if value else None


def remember(root: Path, app_root: Path) -> None:
    machine.remember(APP_ROOT_KEY, str(app_root.resolve()), root)


def labeling_root(root: Path, dataset_root: Path) -> Path:
    """Where people's pages and labels are on this machine: the remembered app folder, else the project's
    ``dataset_root``. propose, status and import read and write there."""
    app = remembered(root)
    return app if app is not None else dataset_root


def _page_in(documents: Path, relative: Path) -> bool:
    """Whether the app still has the page a ``DOC/groups|proposals/PAGE_groups.json`` file belongs to."""
    if len(relative.parts) != 3 or relative.parts[1] not in (GROUPS, PROPOSALS) \
            or not relative.name.endswith(GROUPS_SUFFIX):
        return False
    return AppFolder(documents.parent).page_image(relative.parts[0], page_of(relative)) is not None


def _copy(src: Path, dst: Path) -> None:
    # A new file, then a rename: the old one may be a hard link into DVC's cache, which an in-place
    # write would corrupt. copy2 keeps the modification time, so the next mirror skips the file.
    with files.written(dst) as tmp:
        shutil.copy2(src, tmp)


def mirror(app_root: Path, target: Path, kept_back: list[str] | None = None) -> tuple[int, int]:
    """Make ``target/documents`` equal ``app_root/documents``; return (files copied, files deleted).
    A label or proposal only ``target`` has, for a page the app still has, is copied back into the app
    (and named in ``kept_back``) instead."""
    source = AppFolder(app_root).documents
    if not source.is_dir():
        raise UserError(f"{app_root}: no documents/ folder; is this the app's dataset_root?")
    if links := outside_links(app_root):  # copied, another folder's files would go to the NAS as pages
        raise UserError(f"{len(links)} link(s) in {app_root} lead outside it; copy the files in instead. Nothing "
                        "was copied:\n  " + "\n  ".join(links[:20]))
    if target.resolve() == app_root.resolve():
        return 0, 0
    copy = AppFolder(target).documents
    copied = deleted = 0
    wanted: set[str] = set()
    for folder, _, names in os.walk(source):
        relative = Path(folder).relative_to(source)
        for name in names:
            rel = (relative / name).as_posix()
            wanted.add(rel)
            src, dst = Path(folder) / name, copy / relative / name
            stat = src.stat()
            if dst.is_file():
                current = dst.stat()
                if current.st_size == stat.st_size and current.st_mtime_ns == stat.st_mtime_ns:
                    continue
            _copy(src, dst)
            copied += 1
    if copy.is_dir():
        for folder, _, names in os.walk(copy):
            relative = Path(folder).relative_to(copy)
            for name in names:
                if (relative / name).as_posix() in wanted:
                    continue
                if _page_in(source, relative / name):  # a person's label made in the copy: back to the app
                    _copy(Path(folder) / name, source / relative / name)
                    if kept_back is not None:
                        kept_back.append((relative / name).as_posix())
                    continue
                files.remove(Path(folder) / name)  # the app deleted it (or a crashed copy's tmp)
                deleted += 1
    return copied, deleted

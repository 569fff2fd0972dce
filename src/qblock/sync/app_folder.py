"""Where the labeling app keeps its dataset_root on this machine, and bringing it into the repo.

DVC versions folders inside the repository, while the app may write anywhere (its own folder
on the laptop, another drive). `qblock publish --app PATH` remembers PATH for this machine (in
`.qblock/machine.yaml`, never committed) and mirrors it into `paths.dataset_root` before each
publish: new and changed files are copied (by size and modification time), files the app
deleted are deleted. When the app writes straight into `paths.dataset_root`, none of this is
needed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from qblock.core import files, machine
from qblock.core.errors import UserError

APP_ROOT_KEY = "app_dataset_root"


def remembered(root: Path) -> Path | None:
    value = machine.setting(APP_ROOT_KEY, root)
    return Path(value) if value else None


def remember(root: Path, app_root: Path) -> None:
    machine.remember(APP_ROOT_KEY, str(app_root.resolve()), root)


def mirror(app_root: Path, target: Path) -> tuple[int, int]:
    """Make ``target/documents`` equal ``app_root/documents``; return (files copied, files deleted)."""
    source = app_root / "documents"
    if not source.is_dir():
        raise UserError(f"{app_root}: no documents/ folder; is this the app's dataset_root?")
    if target.resolve() == app_root.resolve():
        return 0, 0
    copied = deleted = 0
    wanted: set[str] = set()
    for folder, _, names in os.walk(source):
        relative = Path(folder).relative_to(source)
        for name in names:
            rel = (relative / name).as_posix()
            wanted.add(rel)
            src, dst = Path(folder) / name, target / "documents" / relative / name
            stat = src.stat()
            if dst.is_file():
                current = dst.stat()
                if current.st_size == stat.st_size and current.st_mtime_ns == stat.st_mtime_ns:
                    continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            # A new file, then a rename: the old one may be a hard link into DVC's cache, which an in-place
            # write would corrupt. copy2 keeps the modification time, so the next mirror skips the file.
            tmp = dst.with_name(f".{dst.name}.qblock-tmp")
            shutil.copy2(src, tmp)
            files.replace(tmp, dst)
            copied += 1
    if (target / "documents").is_dir():
        for folder, _, names in os.walk(target / "documents"):
            relative = Path(folder).relative_to(target / "documents")
            for name in names:
                if (relative / name).as_posix() not in wanted:  # the app deleted it (or a crashed copy's tmp)
                    files.remove(Path(folder) / name)
                    deleted += 1
    return copied, deleted

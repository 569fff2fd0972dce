"""`qblock doctor --deep`: read back every object on the NAS that the current commit (or every
commit) needs and check that its content still matches its hash.

`dvc status --cloud` only asks whether an object exists, so a NAS that flipped a byte goes
unnoticed until a pull fails on the other machine, perhaps months later. `dvc push` will not
replace a bad object either: it sees the name and skips it. So a bad object must be deleted on
the NAS and pushed again from a machine whose cache holds a good copy; `--repair` does both for
the objects this machine holds good copies of.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from qblock.core.errors import UserError
from qblock.core.progress import track
from qblock.sync.remote import REMOTE

JOBS = 8  # reads in flight: NAS latency, not this machine's cores, is what they hide


@dataclass
class BadObject:
    oid: str  # its DVC hash (a folder listing's ends in .dir)
    name: str  # what it is in the project: data/dataset_root/documents/.../page_001.png, models/best.pt
    nas_path: str
    problem: str  # "missing", or "content does not match its hash (md5 ...)"
    local_copy: str | None = None  # this machine's cache file when it holds a good copy


def _md5(handle) -> str:
    digest = hashlib.md5()  # noqa: S324 (DVC's content address)
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _expected(oid: str) -> str:
    return oid[: -len(".dir")] if oid.endswith(".dir") else oid  # a folder's listing is addressed by its own md5


def verify(root: Path, all_commits: bool, repair: bool) -> tuple[int, list[BadObject]]:
    """(objects checked, the bad ones). With ``repair``, bad objects this machine holds good copies of are
    replaced on the NAS with those copies."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        try:
            used = repo.used_objs(all_commits=all_commits, remote=REMOTE, force=True, jobs=JOBS)
        except Exception as exc:  # a .dir listing that is on no machine, an unreadable commit
            raise UserError(f"could not list what {'the commits need' if all_commits else 'this commit needs'}: "
                            f"{exc}") from None
        names = {hi.value: hi.obj_name or hi.value for infos in used.values() for hi in infos if hi.value}
        odb = repo.cloud.get_remote_odb(REMOTE, "doctor --deep", hash_name="md5")
        local = repo.cache.local

        def check(oid: str) -> BadObject | None:
            path = odb.oid_to_path(oid)
            try:
                with odb.fs.open(path, "rb") as handle:
                    found = _md5(handle)
            except FileNotFoundError:
                return BadObject(oid, names[oid], path, "missing on the NAS")
            if found == _expected(oid):
                return None
            return BadObject(oid, names[oid], path, f"content does not match its hash (reads as md5 {found})")

        with ThreadPoolExecutor(JOBS) as pool:
            results = list(track(pool.map(check, sorted(names)), "doctor: reading the NAS", total=len(names)))
        bad = [r for r in results if r is not None]
        for item in bad:
            copy = Path(local.oid_to_path(item.oid))
            if copy.is_file():
                with copy.open("rb") as handle:
                    if _md5(handle) == _expected(item.oid):
                        item.local_copy = str(copy)
        if repair:
            for item in bad:
                if item.local_copy:
                    _replace(odb.fs, item)
    return len(names), bad


def _replace(fs, item: BadObject) -> None:
    """Upload this machine's good copy beside the bad object, then put it in its place; read it back."""
    temporary = f"{item.nas_path}.qblock-repair.tmp"
    fs.put_file(item.local_copy, temporary)
    if fs.exists(item.nas_path):
        fs.rm_file(item.nas_path)  # SFTP renames do not replace
    fs.mv(temporary, item.nas_path)
    with fs.open(item.nas_path, "rb") as handle:
        if _md5(handle) != _expected(item.oid):
            raise UserError(f"{item.nas_path}: still does not match its hash after the repair: is the NAS failing?")
    item.problem += "; repaired from this machine's copy"

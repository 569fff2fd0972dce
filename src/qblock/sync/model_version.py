"""Which model this machine has, which commit trained it, and whether the origin has a newer one.

A model is known by the MD5 that `dvc.lock` records for `models/best.pt` (DVC's own hash of the
file): the commit that first recorded it is the one whose training made it. Comparing needs only
git (a fetch and `git show`), not the NAS: cheap enough for the app or a timer to ask often.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from qblock.core.errors import UserError
from qblock.sync.commands import run

FETCH_TIMEOUT_S = 20


@dataclass
class Commit:
    sha: str
    date: str
    subject: str

    def __str__(self) -> str:
        return f"{self.sha[:7]} ({self.date}, \"{self.subject}\")"


@dataclass
class ModelState:
    local_md5: str | None  # None: no model file here
    trained_at: Commit | None  # the commit whose dvc.lock first records the local model
    origin_md5: str | None  # the model the origin's branch records; None: none trained there yet
    origin_commit: Commit | None  # the commit that trained the origin's model
    origin_error: str | None = None  # why the origin could not be asked

    @property
    def newer_on_origin(self) -> bool:
        return self.origin_md5 is not None and self.origin_md5 != self.local_md5


def file_md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 (DVC's content hash, not a security measure)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_md5(root: Path, revision: str, model_file: Path) -> str | None:
    """The MD5 that `dvc.lock` at ``revision`` records for ``model_file``; None when it records none."""
    shown = run(["git", "show", f"{revision}:dvc.lock"], root, "git show", check=False)
    if shown.returncode != 0:
        return None
    return _md5_in_lock(shown.stdout, model_file)


def damaged(root: Path, model_file: Path) -> str | None:
    """Why ``model_file`` is not the model this checkout's `dvc.lock` records (cut short by a full disk or a
    copy that stopped, or replaced by hand); None when it is, or when there is no file or no record."""
    path, lock = root / model_file, root / "dvc.lock"
    if not path.is_file() or not lock.is_file():
        return None
    recorded = _md5_in_lock(lock.read_text(encoding="utf-8"), model_file)
    if recorded is None or file_md5(path) == recorded:
        return None
    return (f"{model_file} ({path.stat().st_size:,} bytes) is not the model dvc.lock records (md5 {recorded[:8]}...): "
            "damaged, or replaced by hand")


def _md5_in_lock(text: str, model_file: Path) -> str | None:
    try:
        lock = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return None
    if not isinstance(lock, dict):
        return None
    wanted = model_file.as_posix()
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if Path(str(out.get("path", ""))).as_posix() == wanted and out.get("md5"):
                return str(out["md5"])
    return None


def first_recorded(root: Path, revision: str, md5: str) -> Commit | None:
    """The oldest commit reachable from ``revision`` whose dvc.lock gained ``md5``: where that model was trained."""
    log = run(["git", "log", "--reverse", "--format=%H%x09%cs%x09%s", "-S", md5, revision, "--", "dvc.lock"],
              root, "git log", check=False)
    lines = log.stdout.splitlines() if log.returncode == 0 else []
    if not lines:
        return None
    sha, date, subject = (lines[0].split("\t", 2) + ["", ""])[:3]
    return Commit(sha, date, subject)


def fetch(root: Path) -> None:
    """`git fetch` of the branch's upstream, within FETCH_TIMEOUT_S."""
    import subprocess

    from qblock.sync.commands import tools_env

    try:
        result = subprocess.run(["git", "fetch", "--quiet"], cwd=root, capture_output=True, text=True,
                                env=tools_env() | {"GIT_TERMINAL_PROMPT": "0"}, timeout=FETCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"git fetch: the origin did not answer within {FETCH_TIMEOUT_S} s") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()[:1] or ["no message"]  # git's first line says why
        raise UserError(f"git fetch failed: {said[0]}")


def model_state(root: Path, model_file: Path, ask_origin: bool = True) -> ModelState:
    local = file_md5(root / model_file) if (root / model_file).is_file() else None
    trained_at = first_recorded(root, "HEAD", local) if local else None
    origin_md5 = origin_commit = error = None
    if ask_origin:
        upstream = run(["git", "rev-parse", "--abbrev-ref", "@{upstream}"], root, "git rev-parse", check=False)
        if upstream.returncode != 0:
            error = "this branch has no upstream on the origin"
        else:
            try:
                fetch(root)
            except UserError as exc:
                error = str(exc)
            origin_md5 = recorded_md5(root, "@{upstream}", model_file)
            if origin_md5:
                origin_commit = first_recorded(root, "@{upstream}", origin_md5)
    return ModelState(local, trained_at, origin_md5, origin_commit, error)


def describe(state: ModelState, model_file: Path) -> list[str]:
    """What `qblock status` says about the model, a line each."""
    lines = []
    if state.local_md5 is None:
        lines.append(f"model: none here ({model_file})")
    elif state.trained_at:
        lines.append(f"model: {model_file} trained at commit {state.trained_at}")
    else:
        lines.append(f"model: {model_file} (no commit records it: trained here and not committed?)")
    stale = ""
    if state.origin_error:
        lines.append(f"origin: could not ask ({state.origin_error})")
        stale = " (as of the last fetch)"
    if state.newer_on_origin:
        where = f"commit {state.origin_commit}" if state.origin_commit else "the origin's branch"
        lines.append(f"a newer model is on the NAS{stale}, trained at {where}: qblock pull-model")
    elif state.origin_md5 is None:
        if not state.origin_error:
            lines.append("origin: no trained model yet")
    elif state.local_md5:
        lines.append(f"origin: this is the newest model{stale}")
    return lines

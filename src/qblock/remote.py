"""The NAS as DVC remote, and the round trips between laptop, NAS and desktop.

Every command here is a short, fixed sequence of git and dvc commands that stops at the first
failure with the command that failed and what to do. The one rule they all keep: a commit is
pushed to git only after its data is on the remote, so the other machine never checks out a
commit whose data it cannot pull.

The remote is configured per machine in `.dvc/config.local` (never committed): the laptop may
see the NAS as `/Volumes/qblock-store`, the desktop as `Z:\\qblock-store`, either as `ssh://`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from qblock.errors import UserError

if TYPE_CHECKING:
    from qblock.config import Paths

REMOTE = "nas"
PROBE_TIMEOUT_S = 6  # for the remote's answer; with Python and dvc starting, a command fails within 10 s


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
        said = "\n  ".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise UserError(f"{what} failed (`{' '.join(args)}`):\n  {said}" + (f"\n{hint}" if hint else ""))
    return result


def _is_url(location: str) -> bool:
    return "://" in location


def probe(root: Path, url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Check that the configured remote (``url``, for the messages) is reachable and writable:
    write, read back, delete. The clock starts once dvc is imported: ``timeout_s`` is the time
    the remote gets to answer.
    """
    from dvc.repo import Repo

    outcome: dict[str, object] = {}

    def attempt() -> None:
        try:
            with Repo(str(root)) as repo:
                remote = repo.cloud.get_remote(REMOTE)
                fs, path = remote.fs, remote.path
                fs.makedirs(path, exist_ok=True)
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
    if worker.is_alive():
        raise UserError(f"remote {url}: no answer within {timeout_s:g} s. Is the NAS on and reachable "
                        "(mounted, or its SSH port open)? One waking from sleep may need a second try. "
                        "Nothing was changed locally.")
    raise UserError(f"remote {url}: not reachable or not writable: {outcome['error']}")


def _dvc_config(root: Path):
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
    url = _dvc_config(root)["remote"].get(REMOTE, {}).get("url")
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

    dvc_config = _dvc_config(root)
    local = root / ".dvc" / "config.local"
    before = local.read_text(encoding="utf-8") if local.is_file() else None
    # what `dvc remote add --local --default --force` and `dvc remote modify --local` write, without
    # starting dvc twice more: the whole command stays within 10 s when the NAS does not answer
    try:
        with dvc_config.edit("local") as config:  # validated before it is written
            config["remote"][REMOTE] = {"url": location}
            if keyfile is not None:
                config["remote"][REMOTE]["keyfile"] = str(keyfile.expanduser().resolve())
            config["core"]["remote"] = REMOTE
    except ConfigError as exc:
        raise UserError(f"{location}: DVC does not take this as a remote ({exc}). Nothing was changed.") from None
    try:
        probe(root, location, timeout_s)
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


def _require_clean(root: Path, what: str) -> None:
    status = run(["git", "status", "--porcelain", "--untracked-files=no"], root, "git status").stdout
    if status.strip():
        raise UserError(f"{what} needs a clean git tree; commit or stash these first:\n  "
                        + "\n  ".join(status.strip().splitlines()[:10]))


def _commit_changes(root: Path, message: Callable[[], str], console: Console, who: str) -> None:
    """Stage everything and commit it, if anything changed (``message`` is only asked for then)."""
    run(["git", "add", "-A"], root, "git add")
    if run(["git", "diff", "--cached", "--quiet"], root, "git diff", check=False).returncode:
        text = message()
        run(["git", "commit", "-q", "-m", text], root, "git commit")
        console.print(f"{who}: committed \"{text}\"")


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


def _push_data_then_commit(root: Path, console: Console) -> None:
    console.print("push: data to the NAS ...")
    run(["dvc", "push", "--remote", REMOTE], root, "dvc push",
        "Nothing was pushed to git. Rerun when the NAS is back: an interrupted push resumes.")
    try:
        missing = not_on_remote(root)
    except UserError as exc:
        raise UserError(f"{exc}\nThe commit was not pushed to git; rerun the same command to finish.") from None
    if missing:
        shown = ", ".join(f"{path} ({state})" for path, state in sorted(missing.items())[:5])
        raise UserError(f"some data of this commit is not on the NAS after `dvc push`: {shown}; refusing to push "
                        "the commit to git. Run `qblock doctor`.")
    console.print("push: the commit to git ...")
    run(["git", "push"], root, "git push", "The data is on the NAS already; rerun `git push` when git is reachable.")


def publish(root: Path, paths: Paths, console: Console, app_root: Path | None = None) -> None:
    """Laptop: validate the labels, snapshot them into DVC, commit, push data, then the commit."""
    from qblock import app_folder
    from qblock.config import check_params_in_sync

    require_remote(root)
    if differences := check_params_in_sync(root):
        raise UserError("params.yaml does not match conf/: run `qblock params` first\n  " + "\n  ".join(differences))
    if app_root is not None:
        app_folder.remember(root, app_root)
    app_root = app_folder.remembered(root)
    dataset_root = Path(paths.dataset_root)
    if app_root is not None:
        copied, deleted = app_folder.mirror(app_root, root / dataset_root)
        console.print(f"publish: {app_root} -> {dataset_root}: {copied} files copied, {deleted} deleted")
    console.print("publish: validating the labels (export, split, validate) ...")
    run(["dvc", "repro", "validate"], root, "validating the labels", "Fix the files named above, then publish again.")
    run(["dvc", "add", str(dataset_root)], root, f"snapshotting {dataset_root} into DVC")

    def message() -> str:
        stats = json.loads((root / paths.reports_dir / "data_stats.json").read_text(encoding="utf-8"))
        return f"labels: {stats.get('pages')} pages, {stats.get('boxes')} boxes, {stats.get('documents')} documents"

    _commit_changes(root, message, console, "publish")
    _push_data_then_commit(root, console)
    console.print("publish: done. The desktop can `qblock desktop-run`.")


def desktop_run(root: Path, paths: Paths, console: Console) -> None:
    """Desktop: git pull, dvc pull, dvc repro, commit the results, push data, then the commit."""
    require_remote(root)
    _require_clean(root, "desktop-run")
    console.print("desktop-run: git pull ...")
    run(["git", "pull", "--ff-only"], root, "git pull", "Resolve it by hand (`git status`), then rerun.")
    console.print("desktop-run: dvc pull ...")
    run(["dvc", "pull", "--remote", REMOTE, "--allow-missing"], root, "dvc pull")
    console.print("desktop-run: dvc repro ...")
    repro = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=tools_env())  # progress: the user's
    if repro.returncode != 0:
        raise UserError("dvc repro failed (above); nothing was committed or pushed")

    def message() -> str:
        metrics = json.loads((root / paths.metrics_file).read_text(encoding="utf-8"))
        return f"train: mAP50 {metrics['mAP50']:.3f}, mAP50-95 {metrics['mAP50-95']:.3f}"

    _commit_changes(root, message, console, "desktop-run")
    _push_data_then_commit(root, console)
    console.print("desktop-run: done. The laptop can `qblock pull-model`.")


def pull_model(root: Path, model_file: Path, metrics_file: Path, console: Console) -> None:
    """Laptop: the current model and its metrics, not the training data."""
    require_remote(root)
    run(["git", "pull", "--ff-only"], root, "git pull", "Resolve it by hand (`git status`), then rerun.")
    run(["dvc", "pull", "--remote", REMOTE, str(model_file)], root, f"dvc pull {model_file}",
        "Has the desktop pushed a trained model (`qblock desktop-run`)?")
    shown = ""
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        shown = f" (mAP50 {metrics.get('mAP50', 0):.3f}, mAP50-95 {metrics.get('mAP50-95', 0):.3f})"
    console.print(f"pull-model: {model_file}{shown}")

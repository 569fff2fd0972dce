"""The round trips between laptop, NAS and desktop: publish, desktop-run, pull-model.

Every command here is a short, fixed sequence of git and dvc commands that stops at the first
failure with the command that failed and what to do. The one rule they all keep: a commit is
pushed to git only after its data is on the remote, so the other machine never checks out a
commit whose data it cannot pull. A command stopped between its commit and its `git push` is
finished by running it again: nothing is committed twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from qblock.config.schema import Paths
from qblock.core import machine
from qblock.core import metric_names as names
from qblock.core.errors import UserError
from qblock.sync import storage
from qblock.sync.remote import REMOTE, not_on_remote, require_remote, run, tools_env


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
    run(["git", "push"], root, "git push",
        "The data is on the NAS already; when git is reachable, rerun the same command: it pushes this commit "
        "without committing again.")


def publish(root: Path, paths: Paths, console: Console, app_root: Path | None = None) -> None:
    """Laptop: validate the labels, snapshot them into DVC, commit, push data, then the commit."""
    from qblock.config.compose import check_params_in_sync
    from qblock.sync import app_folder

    require_remote(root)
    if differences := check_params_in_sync(root):
        raise UserError("params.yaml does not match conf/: run `qblock params` first\n  " + "\n  ".join(differences))
    if app_root is not None:
        app_folder.remember(root, app_root)
    app_root = app_folder.remembered(root)
    dataset_root = Path(paths.dataset_root)
    storage.apply_link_type(root, dataset_root, console)
    if app_root is not None:
        copied, deleted = app_folder.mirror(app_root, root / dataset_root)
        console.print(f"publish: {app_root} -> {dataset_root}: {copied} files copied, {deleted} deleted")
    # Snapshot first, then export: `dvc add` replaces each page with the file the cache keeps (a link to it,
    # or a copy), and the export must link to that file, not to one DVC has just let go (sync/storage.py).
    # A failed validation still stops publish before anything is committed or pushed.
    run(["dvc", "add", str(dataset_root)], root, f"snapshotting {dataset_root} into DVC")
    console.print("publish: validating the labels (export, split, validate) ...")
    run(["dvc", "repro", "validate"], root, "validating the labels", "Fix the files named above, then publish again.")

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
    machine.remember(storage.ROLE_KEY, "desktop", root)
    storage.apply_link_type(root, Path(paths.dataset_root), console)
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
        return f"train: mAP50 {metrics[names.MAP50]:.3f}, mAP50-95 {metrics[names.MAP50_95]:.3f}"

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
        shown = f" (mAP50 {metrics.get(names.MAP50, 0):.3f}, mAP50-95 {metrics.get(names.MAP50_95, 0):.3f})"
    console.print(f"pull-model: {model_file}{shown}")

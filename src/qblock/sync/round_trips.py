"""The round trips between laptop, NAS and desktop: publish, desktop-run, pull-model.

Every command here is a short, fixed sequence of git and dvc commands that stops at the first
failure with the command that failed and what to do. The one rule they all keep: a commit is
pushed to git only after its data is on the remote, so the other machine never checks out a
commit whose data it cannot pull. A command stopped between its commit and its `git push` is
finished by running it again: nothing is committed twice. A `desktop-run` stopped during
`dvc repro` (Ctrl+C, a reboot) leaves `dvc.lock` and the pipeline's committed outputs changed;
it remembers the commit it was training (`.qblock/desktop-run.json`), and run again on that
commit it takes those changes as its own and continues (the training resumes from its checkpoint).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from qblock.config.schema import Paths
from qblock.core import machine, secrets
from qblock.core import metric_names as names
from qblock.core.errors import UserError
from qblock.data.app_dataset import outside_links
from qblock.sync import storage
from qblock.sync.commands import DISK_FULL, run, tools_env
from qblock.sync.process_lock import ProcessLock
from qblock.sync.remote import REMOTE, not_on_remote, require_remote

RUN_MARKER = Path(".qblock") / "desktop-run.json"
RUN_LOCK = Path(".qblock") / "desktop-run.lock"


def changed_files(root: Path) -> list[str]:
    """Tracked files with changes not committed (repository-relative, posix)."""
    status = run(["git", "status", "--porcelain", "-z", "--untracked-files=no"], root, "git status").stdout
    return [entry[3:] for entry in status.split("\0") if len(entry) > 3]


def pipeline_written(root: Path, files: list[str]) -> list[str]:
    """Those of ``files`` that `dvc repro` itself writes: dvc.lock, .gitignore files, the stages' outputs."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        outs = [Path(out.fs_path).resolve().relative_to(root.resolve()).as_posix() for out in repo.index.outs]
    return [f for f in files if f == "dvc.lock" or Path(f).name == ".gitignore"
            or any(f == out or f.startswith(out + "/") for out in outs)]


def head(root: Path) -> str:
    return run(["git", "rev-parse", "HEAD"], root, "git rev-parse").stdout.strip()


def interrupted_run(root: Path) -> str | None:
    """The commit a `desktop-run` was training when it stopped, when that is still this checkout's HEAD."""
    try:
        commit = json.loads((root / RUN_MARKER).read_text(encoding="utf-8"))["commit"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return commit if commit == head(root) else None


def person_changes(root: Path) -> list[str]:
    """Uncommitted changes that are a person's, not what an interrupted `desktop-run` left behind."""
    changed = changed_files(root)
    if not changed or interrupted_run(root) is None:
        return changed
    own = set(pipeline_written(root, changed))
    return [f for f in changed if f not in own]


def _require_clean(root: Path, what: str) -> None:
    if changed := person_changes(root):
        raise UserError(f"{what} needs a clean git tree; commit or stash these first:\n  "
                        + "\n  ".join(changed[:10]))


def uncommitted(root: Path) -> list[str]:
    """Every changed or untracked file (repository-relative, posix), ignored files left out."""
    status = run(["git", "status", "--porcelain", "-z", "--untracked-files=all"], root, "git status").stdout
    entries = [entry[3:] for entry in status.split("\0") if len(entry) > 3 and entry[2] == " "]
    return sorted(set(entries))


def _commit_changes(root: Path, message: Callable[[], str], console: Console, who: str,
                    own: Callable[[list[str]], list[str]]) -> None:
    """Commit what this round wrote itself (``own`` picks it from the changed files), if anything; the
    rest (a person's edit, a stray `.env`) is named and left as it is, never committed on their behalf."""
    changed = uncommitted(root)
    mine = own(changed)
    if others := [f for f in changed if f not in set(mine)]:
        more = f" and {len(others) - 10} more" if len(others) > 10 else ""
        console.print(f"{who}: left uncommitted, not written by {who} (commit them yourself if they belong in "
                      f"git): " + ", ".join(others[:10]) + more)
    if not mine:
        return
    run(["git", "add", "-A", "--", *mine], root, "git add")
    if run(["git", "diff", "--cached", "--quiet"], root, "git diff", check=False).returncode:
        text = message()
        run(["git", "commit", "-q", "-m", text], root, "git commit")
        console.print(f"{who}: committed \"{text}\"")


def push_data(root: Path, console: Console) -> None:
    """This commit's data to the NAS: over SSH the missing objects in one stream first (sync/stream_push.py).
    A push stopped by a full disk takes back the half-written files it left on a folder NAS."""
    from qblock.sync import cleanup, stream_push

    started = time.time()
    try:
        stream_push.push(root, console, lambda: run(
            ["dvc", "push", "--remote", REMOTE], root, "dvc push",
            "Nothing was pushed to git. Rerun when the NAS is back: an interrupted push resumes."))
    except UserError as exc:
        if DISK_FULL in str(exc) and (removed := cleanup.remove_partial_uploads(root, started)):
            console.print(f"push: removed the {removed} half-written file(s) this push left on the NAS")
        raise


REJECTED = ("[rejected]", "non-fast-forward", "fetch first")  # git's words when the origin moved on


def _push_data_then_commit(root: Path, console: Console,
                           when_origin_moved: Callable[[], None] | None = None) -> None:
    console.print("push: data to the NAS ...")
    push_data(root, console)
    try:
        missing = not_on_remote(root)
    except UserError as exc:
        raise UserError(f"{exc}\nThe commit was not pushed to git; rerun the same command to finish.") from None
    if missing:
        shown = ", ".join(f"{path} ({state})" for path, state in sorted(missing.items())[:5])
        raise UserError(f"some data of this commit is not on the NAS after `dvc push`: {shown}; refusing to push "
                        "the commit to git. Run `qblock doctor`.")
    if leaks := secrets.in_unpushed_commits(root):
        raise UserError("refusing to push to git: what would go to the origin holds a secret:\n  "
                        + "\n  ".join(leaks[:10]) + "\nTake it out of those commits (`git reset --soft @{upstream}`, "
                        "remove or untrack the file, commit again); put tokens in the environment or "
                        ".qblock/machine.yaml. The data is on the NAS.")
    console.print("push: the commit to git ...")
    pushed = run(["git", "push"], root, "git push", check=False)
    rejected = pushed.returncode and any(word in pushed.stderr for word in REJECTED)
    if rejected and when_origin_moved:
        when_origin_moved()
    if rejected:
        raise UserError("git push was refused: the origin has commits this checkout lacks (the other machine "
                        "changed conf/ or trained). The data is on the NAS. To finish: `git pull` (a conflict in "
                        "dvc.lock: take the origin's side, `git checkout --theirs dvc.lock`, then `git add dvc.lock`; "
                        "in conf/: keep what you both want), `git commit`, then the same command again: it "
                        "validates again and pushes.")
    if pushed.returncode:
        said = "\n  ".join(pushed.stderr.strip().splitlines()[-6:])
        raise UserError(f"git push failed (`git push`):\n  {said}\nThe data is on the NAS already; when git is "
                        "reachable, rerun the same command: it pushes this commit without committing again.")


TRAINED = "train: "  # how desktop-run's own commits begin (their message is the new mAP)


def _keep_aside_and_follow_the_origin(root: Path) -> str:
    """The origin moved on while the desktop trained (the laptop published again): this commit cannot go on top.
    It goes to a branch of its own on the origin (its data is on the NAS, and `qblock gc` keeps every branch),
    and this checkout follows the origin, so a run trains the newer labels. Returns the branch.

    Only desktop-run's own training commits are set aside: a person's unpushed commit (a conf/ change) is
    never moved off the branch; desktop-run stops and says how to bring it onto the origin."""
    subjects = run(["git", "log", "--format=%h %s", "@{upstream}..HEAD"], root, "git log").stdout.splitlines()
    if theirs := [line for line in subjects if not line.split(" ", 1)[-1].startswith(TRAINED)]:
        raise UserError("this checkout has commits the origin lacks that desktop-run did not make, and the origin "
                        "has moved on:\n  " + "\n  ".join(theirs[:5]) + "\nBring them onto the origin first: "
                        "`git pull --rebase` (resolve any conflict; for dvc.lock take the origin's side: "
                        "`git checkout --theirs dvc.lock`), `git push`, then desktop-run again. Nothing was changed.")
    commit = head(root)
    branch = f"qblock/trained-{commit[:7]}"
    run(["git", "push", "origin", f"HEAD:refs/heads/{branch}"], root, f"git push to {branch}")
    run(["git", "fetch", "--quiet"], root, "git fetch")
    run(["git", "reset", "--quiet", "--hard", "@{upstream}"], root, "git reset")
    return branch


def _origin_moved_while_training(root: Path) -> None:
    commit = head(root)
    branch = _keep_aside_and_follow_the_origin(root)
    raise UserError(f"the origin moved on while this model trained (new labels?): its commit {commit[:7]} is kept "
                    f"on the branch {branch} (data on the NAS, run in MLflow), and this checkout now follows the "
                    "origin. Run desktop-run again to train the newer labels (qblock watch does it by itself).")


def publish(root: Path, paths: Paths, console: Console, app_root: Path | None = None) -> None:
    """Laptop: validate the labels, snapshot them into DVC, commit, push data, then the commit."""
    from qblock.config.compose import check_params_in_sync
    from qblock.sync import app_mirror

    require_remote(root)
    if differences := check_params_in_sync(root):
        raise UserError("params.yaml does not match conf/: run `qblock params` first\n  " + "\n  ".join(differences))
    if app_root is not None:
        app_mirror.remember(root, app_root)
    app_root = app_mirror.remembered(root)
    dataset_root = Path(paths.dataset_root)
    storage.apply_link_type(root, dataset_root, console)
    if app_root is not None:
        kept_back: list[str] = []
        copied, deleted = app_mirror.mirror(app_root, root / dataset_root, kept_back)
        console.print(f"publish: {app_root} -> {dataset_root}: {copied} files copied, {deleted} deleted")
        if kept_back:
            console.print(f"publish: {len(kept_back)} label or proposal file(s) were only in {dataset_root}, for pages "
                          f"the app has; copied back into {app_root} rather than deleted: " + ", ".join(kept_back[:5]))
    if links := outside_links(root / dataset_root):  # `dvc add` would copy what they point at into the cache
        raise UserError(f"{len(links)} link(s) in {dataset_root} lead outside it; copy the files in instead:\n  "
                        + "\n  ".join(links[:20]))
    # Snapshot first, then export: `dvc add` replaces each page with the file the cache keeps (a link to it,
    # or a copy), and the export must link to that file, not to one DVC has just let go (sync/storage.py).
    # A failed validation still stops publish before anything is committed or pushed.
    for _ in range(SNAPSHOT_TRIES):
        run(["dvc", "add", str(dataset_root)], root, f"snapshotting {dataset_root} into DVC")
        console.print("publish: validating the labels (export, split, validate) ...")
        run(["dvc", "repro", "validate"], root, "validating the labels",
            "Fix the files named above, then publish again.")
        # validate read the files as they are now; the snapshot must still be them (an app saving a page
        # while publish ran leaves a half-written file in the snapshot and the whole one on disk)
        if _snapshot_is_workspace(root, dataset_root):
            break
        console.print(f"publish: pages in {dataset_root} changed while publish ran (the app saved?); "
                      "snapshotting and validating them again")
    else:
        raise UserError(f"the pages in {dataset_root} kept changing while publish ran ({SNAPSHOT_TRIES} tries): "
                        "let the app finish (or close it) and publish again. Nothing was committed or pushed.")

    def message() -> str:
        stats = json.loads((root / paths.reports_dir / "data_stats.json").read_text(encoding="utf-8"))
        return f"labels: {stats.get('pages')} pages, {stats.get('boxes')} boxes, {stats.get('documents')} documents"

    require_remote(root)  # still mounted: a NAS gone since the start stops publish before it commits

    def own(files: list[str]) -> list[str]:
        snapshot, written = f"{dataset_root.as_posix()}.dvc", set(pipeline_written(root, files))
        return [f for f in files if f == snapshot or f in written]

    _commit_changes(root, message, console, "publish", own)
    _push_data_then_commit(root, console)
    console.print("publish: done. The desktop can `qblock desktop-run`.")


def desktop_run(root: Path, paths: Paths, console: Console) -> None:
    """Desktop: git pull, dvc pull, dvc repro, commit the results, push data, then the commit.

    One at a time on a machine, whether a person or `qblock watch` started it.
    """
    with ProcessLock(root / RUN_LOCK, "a desktop-run"):
        _desktop_run(root, paths, console)


def _desktop_run(root: Path, paths: Paths, console: Console) -> None:
    require_remote(root)
    _require_clean(root, "desktop-run")
    machine.remember(storage.ROLE_KEY, "desktop", root)
    storage.apply_link_type(root, Path(paths.dataset_root), console)
    left_behind = changed_files(root) if interrupted_run(root) else []
    if left_behind:  # this checkout's own unfinished run: finish it, unless newer labels make it moot
        run(["git", "fetch", "--quiet"], root, "git fetch", "Is the git origin reachable? Rerun when it is.")
        newer = run(["git", "rev-list", "--count", "HEAD..@{upstream}"], root, "git rev-list", check=False)
        if newer.returncode == 0 and int(newer.stdout.strip() or 0):
            console.print("desktop-run: the origin has newer commits; dropping the interrupted run's changes to "
                          + ", ".join(left_behind[:5]))
            run(["git", "checkout", "HEAD", "--", *left_behind], root, "git checkout")
            left_behind = []
        else:
            console.print(f"desktop-run: finishing the run interrupted at commit {head(root)[:7]}")
    if not left_behind:
        run(["git", "fetch", "--quiet"], root, "git fetch", "Is the git origin reachable? Rerun when it is.")
        counts = run(["git", "rev-list", "--left-right", "--count", "@{upstream}...HEAD"], root, "git rev-list",
                     check=False).stdout.split()
        if len(counts) == 2 and int(counts[0]) and int(counts[1]):  # an unpushed result, and newer labels
            branch = _keep_aside_and_follow_the_origin(root)
            console.print(f"desktop-run: the origin moved on since this checkout's last run; its unpushed commit "
                          f"is kept on the branch {branch}")
        console.print("desktop-run: git pull ...")
        run(["git", "pull", "--ff-only"], root, "git pull", "Resolve it by hand (`git status`), then rerun.")
    console.print("desktop-run: dvc pull ...")
    run(["dvc", "pull", "--remote", REMOTE, "--allow-missing"], root, "dvc pull")
    _require_pulled(root, Path(paths.dataset_root))
    marker = root / RUN_MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"commit": head(root)}), encoding="utf-8")
    console.print("desktop-run: dvc repro ...")
    repro = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=tools_env())  # progress: the user's
    if repro.returncode != 0:
        raise UserError("dvc repro failed (above); nothing was committed or pushed")

    def message() -> str:
        metrics = json.loads((root / paths.metrics_file).read_text(encoding="utf-8"))
        return f"{TRAINED}mAP50 {metrics[names.MAP50]:.3f}, mAP50-95 {metrics[names.MAP50_95]:.3f}"

    _commit_changes(root, message, console, "desktop-run", lambda files: pipeline_written(root, files))
    marker.unlink(missing_ok=True)  # committed: a rerun only has the push left to do
    _push_data_then_commit(root, console, lambda: _origin_moved_while_training(root))
    console.print("desktop-run: done. The laptop can `qblock pull-model`.")


SNAPSHOT_TRIES = 3


def _snapshot_is_workspace(root: Path, dataset_root: Path) -> bool:
    """Whether the DVC snapshot of ``dataset_root`` is exactly what is on disk: `dvc status` of its .dvc file
    answers, and says nothing (a page missing, changed or not in the cache is something)."""
    status = run(["dvc", "status", "--json", f"{dataset_root.as_posix()}.dvc"], root, "dvc status", check=False)
    try:
        return status.returncode == 0 and not json.loads(status.stdout or "{}")
    except ValueError:
        return False


def _require_pulled(root: Path, dataset_root: Path) -> None:
    """This commit's labeled pages are all here after `dvc pull --allow-missing` (which also lets pass what
    the NAS failed to send when it left halfway): else stop before training on part of them."""
    if (root / f"{dataset_root.as_posix()}.dvc").is_file() and not _snapshot_is_workspace(root, dataset_root):
        raise UserError(f"after `dvc pull`, this commit's pages ({dataset_root}) are not all here: the NAS stopped "
                        "answering, or does not hold them all. Nothing was trained or committed; check the NAS "
                        "(`qblock doctor`) and run desktop-run again.")


def pull_model(root: Path, model_file: Path, metrics_file: Path, console: Console, if_newer: bool = False) -> bool:
    """Laptop: the current model and its metrics, not the training data. True when a model was fetched.

    ``if_newer``: first ask the origin (git only) whether it records another model than the one
    here, and stop there when it does not: cheap enough for the app or a timer to run often.
    """
    if if_newer:
        from qblock.sync import model_version

        state = model_version.model_state(root, model_file)
        if state.origin_error:
            raise UserError(f"pull-model --if-newer: cannot ask the origin: {state.origin_error}")
        if state.origin_md5 is None:
            console.print("pull-model: the origin has no trained model yet")
            return False
        if not state.newer_on_origin:
            console.print(f"pull-model: {model_file} is the newest (trained at commit {state.trained_at})")
            return False
    from qblock.sync.model_version import damaged

    require_remote(root)
    run(["git", "pull", "--ff-only"], root, "git pull", "Resolve it by hand (`git status`), then rerun.")
    force = []
    if why := damaged(root, model_file):  # DVC keeps a changed output; this one is broken, so it is replaced
        console.print(f"pull-model: {why}; replacing it with the NAS's copy")
        force = ["--force"]
    run(["dvc", "pull", "--remote", REMOTE, *force, str(model_file)], root, f"dvc pull {model_file}",
        "Has the desktop pushed a trained model (`qblock desktop-run`)?")
    shown = ""
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        shown = f" (mAP50 {metrics.get(names.MAP50, 0):.3f}, mAP50-95 {metrics.get(names.MAP50_95, 0):.3f})"
    console.print(f"pull-model: {model_file}{shown}")
    return True

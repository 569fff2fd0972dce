"""`qblock doctor`: is this machine ready to publish, train and pull? Each problem comes with
the command that fixes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from qblock.config.schema import read_yaml
from qblock.core import secrets
from qblock.core.errors import UserError
from qblock.sync.commands import run
from qblock.sync.remote import not_on_remote, probe, remote_url


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_remote(root: Path) -> list[Check]:
    url = remote_url(root)
    if url is None:  # one machine on its own: nothing to share, nothing wrong
        return [Check("NAS remote", True, "no remote on this machine: it works on its own (to share through a NAS: "
                      "`qblock remote set PATH_OR_SSH_URL`)")]
    try:
        probe(root, url)
    except UserError as exc:
        return [Check("NAS remote", False, str(exc), f"qblock remote set {url}  (once the NAS answers)")]
    checks = [Check("NAS remote", True, f"{url}: reachable and writable")]
    try:
        missing = not_on_remote(root)
    except UserError as exc:
        return [*checks, Check("data pushed", False, str(exc), "dvc status --cloud --remote nas  (to see it whole)")]
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else "")
        checks.append(Check("data pushed", False, f"not on the NAS yet: {shown}", "dvc push --remote nas"))
    else:
        checks.append(Check("data pushed", True, "everything this commit needs is on the NAS"))
    return checks


def check_model(root: Path) -> list[Check]:
    """The model here is the one dvc.lock records (a file cut short reads as a model to nobody)."""
    from qblock.sync.model_version import damaged

    try:
        model_file = Path(read_yaml(root / "params.yaml")["paths"]["model_dir"]) / "best.pt"
    except (UserError, KeyError, TypeError):
        return []
    if not (root / model_file).is_file():
        return []
    if why := damaged(root, model_file):
        return [Check("model", False, why, "qblock pull-model  (fetches the recorded model from the NAS again)")]
    return [Check("model", True, f"{model_file} is the model dvc.lock records")]


def check_mlflow_store(root: Path) -> list[Check]:
    """A project-local store whose run files are in another folder (moved or copied without them)."""
    from qblock.config.schema import load_params
    from qblock.history.store_location import moved_from
    from qblock.model.mlflow_store import artifact_root

    try:
        params = load_params(root).mlflow
    except UserError:
        return []
    old = moved_from(params)
    if old is None:
        return []
    return [Check("MLflow store", False, f"its runs' files are in {old}, not in this project's {artifact_root(params)} "
                  f"(the project was moved or copied without its mlartifacts folder)",
                  "copy that folder here (as the folder named above); the next train, evaluate or `qblock ui` then "
                  "points the store at it")]


def check_git(root: Path) -> list[Check]:
    ahead = run(["git", "rev-list", "--count", "@{upstream}..HEAD"], root, "git rev-list", check=False)
    if ahead.returncode != 0:
        if remote_url(root) is None:  # one machine: no origin is no fault
            return [Check("commits pushed", True, "this branch has no upstream: one machine on its own (with an "
                          "origin: `git push -u origin HEAD`)")]
        return [Check("commits pushed", False, "this branch has no upstream", "git push -u origin HEAD")]
    count = int(ahead.stdout.strip() or 0)
    if count:
        return [Check("commits pushed", False, f"{count} commit(s) not pushed",
                      "qblock doctor until `data pushed` is ok, then git push")]
    return [Check("commits pushed", True, "in step with the upstream branch"),
            Check("cleanup", True, "to free space use `qblock gc` (this machine) or `qblock gc --remote` (the NAS); "
                  "never plain `dvc gc -c`: it keeps only what this machine's git knows, and deletes what the other "
                  "machine pushed since its last fetch")]


def check_cache(root: Path) -> list[Check]:
    """Whether DVC's cache shares storage with the work tree, and whether that is safe here (sync/storage.py)."""
    from qblock.config.schema import read_yaml
    from qblock.sync import storage

    try:
        dataset_root = Path((read_yaml(root / "params.yaml").get("paths") or {}).get("dataset_root")
                            or "data/dataset_root")
        configured = storage.current_link_type(root)
    except UserError as exc:
        return [Check("cache links", False, str(exc), "qblock params")]
    wanted, why = storage.wanted_link_type(root, dataset_root)
    doctor = run(["dvc", "doctor"], root, "dvc doctor", check=False).stdout
    supported = next((line.split(":", 1)[1].strip() for line in doctor.splitlines() if "Cache types" in line), "?")
    detail = f"cache.type {configured}; this file system supports {supported}"
    if "hardlink" in configured and wanted == storage.SEPARATE:
        return [Check("cache links", False, f"{detail}, but {why}",
                      f"dvc config --local cache.type {storage.SEPARATE} && dvc checkout --relink  (or let the app "
                      f"write its own folder: qblock publish --app PATH)")]
    if wanted == storage.SHARED and "hardlink" not in configured:
        return [Check("cache links", True, f"{detail}: the work tree holds copies of cached pages",
                      "qblock publish (or desktop-run) sets cache.type " + storage.SHARED + " here: " + why)]
    if wanted == storage.SEPARATE and not supported.startswith("<") and "reflink" not in supported:
        return [Check("cache links", True, f"{detail}: copies, since {why}",
                      "qblock publish --app PATH (the app's own folder, mirrored in) lets the cache share storage")]
    return [Check("cache links", True, detail)]


def check_leftovers(root: Path) -> list[Check]:
    from qblock.sync.cleanup import leftover_temp_files

    leftovers = leftover_temp_files(root)
    if not leftovers:
        return [Check("leftover files", True, "no half-written files in the cache or on a folder NAS")]
    size = sum(p.stat().st_size for p in leftovers)
    places = sorted({str(p.parent.parent) for p in leftovers})
    return [Check("leftover files", False, f"{len(leftovers)} half-written file(s) ({size / 1e6:.1f} MB) that "
                  f"interrupted pushes or pulls left, in {', '.join(places[:3])}",
                  "qblock gc deletes them (qblock gc --remote also frees what no commit needs on the NAS)")]


def check_params(root: Path) -> list[Check]:
    from qblock.config.compose import check_params_in_sync

    try:
        differences = check_params_in_sync(root)
    except UserError as exc:
        return [Check("params", False, str(exc), "qblock params")]
    if differences:
        shown = "; ".join(differences[:3])
        return [Check("params", False, f"params.yaml differs from conf/: {shown}", "qblock params")]
    return [Check("params", True, "params.yaml matches conf/")]


def _secrets_in_mlflow(root: Path) -> list[str]:
    from qblock.config.schema import MlflowParams, read_yaml
    from qblock.history.runs import logged_values

    try:  # params.yaml as it is (load_params would refuse a secret before we could name it)
        section = read_yaml(root / "params.yaml").get("mlflow") or {}
        mlflow_params = MlflowParams(section.get("tracking_uri"), section.get("artifact_root"),
                                     section.get("experiment") or "qblock")
        values = logged_values(mlflow_params)
    except Exception as exc:  # a store that cannot be read is reported by the other checks
        return [f"could not read the MLflow store ({secrets.redact(str(exc)).splitlines()[0]})"]
    return [f"MLflow run {run_id[:8]} {what} {key}: {kind}" for run_id, what, key, value in values
            if (kind := secrets.kind_of(value))]


def check_secrets(root: Path) -> list[Check]:
    """Anything that looks like a token or password in what this project shares: the files git tracks
    (pushed to the origin) and their history, DVC's committed config, params.yaml and dvc.lock, and the
    MLflow store's params and tags (the UI). The fix named fits what was found."""
    in_files, in_config = secrets.in_tracked_files(root), secrets.in_dvc_config(root)
    current = {(line.split(" line ")[0], line.split(": ", 1)[1]) for line in in_files}
    current |= {(".dvc/config", secrets.DVC_CREDENTIAL)} if in_config else set()
    in_history, in_mlflow = secrets.in_history(root, current), _secrets_in_mlflow(root)
    found = in_files + in_config + in_history + in_mlflow
    if not found:
        return [Check("secrets", True, "no token or password in tracked files or their history, DVC's config, "
                                       "params.yaml, dvc.lock or MLflow")]
    fixes = []
    if in_files or in_mlflow:
        fixes.append(f"move webhook URLs to {secrets.WEBHOOK_ENV} (or .qblock/machine.yaml) and passwords to the "
                     f"environment, run `qblock params`, delete the MLflow runs that logged it")
    if in_config:
        fixes.append("keep remote credentials out of git: `dvc remote modify --local nas KEY VALUE` writes "
                     ".dvc/config.local (never committed); delete them from .dvc/config and commit")
    if in_history:
        fixes.append("an earlier commit holds it: the origin keeps it whatever HEAD says; rewriting history "
                     "(git filter-repo) on every clone is the only way out of it")
    shown = "; ".join(found[:6]) + (f"; and {len(found) - 6} more" if len(found) > 6 else "")
    return [Check("secrets", False, f"{len(found)} place(s) that would share a secret: {shown}",
                  "; ".join(fixes) + "; and rotate the token or password: what was committed or pushed stays in "
                  "the history")]


def check_watcher(root: Path) -> list[Check]:
    """Whether `qblock watch` runs here and how its last round went; nothing on a machine that never watched."""
    from qblock.services import watch
    from qblock.services.watch_state import WatchState, read_state

    state = read_state(root)
    holder = watch.running_watcher(root)
    if state is None and holder is None:
        return []
    state = state or WatchState()
    trained = state.last_trained
    last = (f"last trained {trained.labels[:7]} -> {trained.result[:7]} at {trained.at}" if trained
            else "no training yet")
    checked = state.last_check or "?"
    if holder is None:
        detail = f"not running (last check {checked}); {last}"
        start = "qblock watch  (or start its task: qblock watch --print-task)"
    else:
        detail = f"running (pid {holder['pid']} since {holder.get('since', '?')}; last check {checked}); {last}"
        start = ""
    if running := state.running:
        detail += f"; {'training' if holder else 'interrupted while training'} {running.commit[:7]} since " \
                  f"{running.since}"
    if failed := state.failed:
        return [Check("watcher", False, f"{detail}; the round for {failed.commit[:7]} failed at {failed.at}: "
                      f"{failed.error}", f"see {watch.LOG.as_posix()}; push a fix (a new commit starts a new round)")]
    if since := state.unreachable_since:
        return [Check("watcher", False, f"{detail}; the origin or NAS has not answered since {since}",
                      f"see {watch.LOG.as_posix()}; is the NAS on and the network up?")]
    return [Check("watcher", True, detail, start)]


def check_nas_content(root: Path, all_commits: bool, repair: bool) -> list[Check]:
    """Every NAS object this commit (or every commit) needs, read back and hashed (sync/nas_objects.py)."""
    from qblock.sync.nas_objects import verify

    if remote_url(root) is None:
        return []
    scope = "every commit" if all_commits else "this commit"
    try:
        count, bad = verify(root, all_commits, repair)
    except UserError as exc:
        return [Check("NAS content", False, str(exc), "qblock doctor (the other checks say what is missing)")]
    broken = [item for item in bad if "repaired" not in item.problem]
    repaired = len(bad) - len(broken)
    done = f"; {repaired} repaired from this machine's copies" if repaired else ""
    if not broken:
        return [Check("NAS content", True, f"{count} objects {scope} needs read back and match their hashes{done}")]
    shown = "; ".join(f"{item.name}: {item.problem} (on the NAS: {item.nas_path})" for item in broken[:8])
    more = f"; and {len(broken) - 8} more" if len(broken) > 8 else ""
    here = sum(1 for item in broken if item.local_copy)
    fix = (f"qblock doctor --deep --repair{' --all-commits' if all_commits else ''}  (this machine holds good copies "
           f"of {here})" if here else
           "on a machine whose DVC cache still holds them: qblock doctor --deep --repair (a plain `dvc push` skips "
           "objects the NAS already has, bad or not)")
    return [Check("NAS content", False, f"{len(broken)} of {count} objects {scope} needs are bad: {shown}{more}{done}",
                  fix)]


def check_merge(root: Path) -> list[Check]:
    """A git merge with conflicts stops every other check: the files they read may hold conflict markers."""
    conflicted = run(["git", "diff", "--name-only", "--diff-filter=U"], root, "git diff", check=False).stdout.split()
    merging = run(["git", "rev-parse", "-q", "--verify", "MERGE_HEAD"], root, "git rev-parse", check=False)
    if not conflicted and merging.returncode != 0:
        return []
    detail = ("a git merge is in progress" + (f", with conflicts in {', '.join(conflicted[:8])}" if conflicted else "")
              + "; the other checks wait until it is finished")
    return [Check("git merge", False, detail, "resolve the files (`git status`; for dvc.lock take the origin's side: "
                  "`git checkout --theirs dvc.lock`), `git add` them, `git commit`; then qblock doctor again")]


def run_doctor(root: Path, console: Console, deep: bool = False, all_commits: bool = False,
               repair: bool = False) -> bool:
    merge = check_merge(root)
    checks = merge or (check_params(root) + check_secrets(root) + check_remote(root) + check_git(root)
                       + check_cache(root) + check_model(root) + check_mlflow_store(root) + check_leftovers(root)
                       + check_watcher(root))
    if deep and not merge and not any(c.name == "NAS remote" and not c.ok for c in checks):
        checks += check_nas_content(root, all_commits, repair)
    for check in checks:
        mark = "[green]ok     [/]" if check.ok else "[red]problem[/]"
        console.print(f"{mark} {check.name}: {check.detail}", highlight=False, soft_wrap=True)
        if check.fix:
            console.print(f"        fix: [bold]{check.fix}[/]", highlight=False, soft_wrap=True)
    problems = sum(not check.ok for check in checks)
    console.print(f"doctor: {problems} problem(s)" if problems else "doctor: all good")
    return not problems

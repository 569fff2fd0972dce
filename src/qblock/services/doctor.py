"""`qblock doctor`: is this machine ready to publish, train and pull? Each problem comes with
the command that fixes it."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from qblock.config.schema import read_yaml
from qblock.core import secrets
from qblock.core.errors import UserError
from qblock.sync.commands import run, tools_env
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


SHARED_FILES = ("params.yaml", "dvc.lock")  # scanned even when git does not track them yet
MAX_SCANNED_BYTES = 2_000_000


def _secrets_in_files(root: Path) -> list[str]:
    listed = run(["git", "ls-files", "-z"], root, "git ls-files", check=False).stdout.split("\0")
    found = []
    for name in sorted({n for n in listed if n} | {n for n in SHARED_FILES if (root / n).is_file()}):
        path = root / name
        try:
            if not path.is_file() or path.stat().st_size > MAX_SCANNED_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # binary files hold no URL a person typed
            continue
        for kind, offset in secrets.find(text):
            found.append(f"{name} line {text.count(chr(10), 0, offset) + 1}: {kind}")
    return found


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


# Keys of DVC's remote config that hold credentials (S3, Azure, SSH, WebDAV, Google Drive ...)
DVC_CREDENTIALS = re.compile(r"^\s*(access_key_id|secret_access_key|session_token|password|account_key|sas_token|"
                             r"connection_string|key_secret|gdrive_client_secret|token)\s*=\s*\S+", re.MULTILINE)
MAX_HISTORY_BYTES = 50_000_000  # of `git log -p` read for secrets in earlier commits
# qblock's own code and its tests: their history (every project's, since each starts as a clone of qblock)
# holds placeholders and made-up test tokens; a person's secrets go into conf/, scripts, configs, notes
OWN_CODE = ("src/", "tests/", "bench/")


def _secrets_in_dvc_config(root: Path) -> list[str]:
    """Credentials in a committed .dvc/config (a `dvc remote modify` without --local)."""
    tracked = run(["git", "ls-files", ".dvc/config"], root, "git ls-files", check=False).stdout.strip()
    config = root / ".dvc" / "config"
    if not tracked or not config.is_file():
        return []
    text = config.read_text(encoding="utf-8", errors="replace")
    return [f".dvc/config line {text.count(chr(10), 0, m.start()) + 1}: a credential of DVC's remote ({m[1]})"
            for m in DVC_CREDENTIALS.finditer(text)]


def _secrets_in_history(root: Path, current: set[tuple[str, str]]) -> list[str]:
    """Secrets added by an earlier commit of any branch and since removed: still in the history the origin
    keeps (``current``: the files and kinds already reported from the work tree)."""
    log = subprocess.run(["git", "log", "--all", "-p", "--no-color", "--no-ext-diff", "--unified=0",
                          "--format=@@commit %h"], cwd=root, capture_output=True, env=tools_env())
    if log.returncode != 0:
        return []
    found: dict[tuple[str, str, str], None] = {}
    commit = name = ""
    for raw in log.stdout[:MAX_HISTORY_BYTES].decode("utf-8", errors="replace").splitlines():
        if raw.startswith("@@commit "):
            commit = raw.split()[1]
        elif raw.startswith("+++ "):
            name = raw[6:] if raw.startswith("+++ b/") and not raw[6:].startswith(OWN_CODE) else ""
        elif raw.startswith("+") and name:
            kinds = [kind for kind, _ in secrets.find(raw)]
            if name == ".dvc/config" and DVC_CREDENTIALS.match(raw[1:]):
                kinds.append("a credential of DVC's remote")
            for kind in kinds:
                if (name, kind) not in current:
                    found[(commit, name, kind)] = None
    return [f"commit {commit} {name}: {kind} (removed since, still in the history)" for commit, name, kind in found]


def check_secrets(root: Path) -> list[Check]:
    """Anything that looks like a token or password in what this project shares: the files git tracks
    (pushed to the origin) and their history, DVC's committed config, params.yaml and dvc.lock, and the
    MLflow store's params and tags (the UI). The fix named fits what was found."""
    in_files, in_config = _secrets_in_files(root), _secrets_in_dvc_config(root)
    current = {(line.split(" line ")[0], line.split(": ", 1)[1]) for line in in_files}
    current |= {(".dvc/config", "a credential of DVC's remote")} if in_config else set()
    in_history, in_mlflow = _secrets_in_history(root, current), _secrets_in_mlflow(root)
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

    state = watch.read_state(root)
    holder = watch.running_watcher(root)
    if not state and holder is None:
        return []
    trained = (state.get("trained") or [{}])[-1]
    last = (f"last trained {trained['labels'][:7]} -> {trained['result'][:7]} at {trained['at']}"
            if trained.get("result") else "no training yet")
    if holder is None:
        detail = f"not running (last check {state.get('last_check', '?')}); {last}"
        start = "qblock watch  (or start its task: qblock watch --print-task)"
    else:
        detail = f"running (pid {holder['pid']} since {holder.get('since', '?')}; last check " \
                 f"{state.get('last_check', '?')}); {last}"
        start = ""
    if running := state.get("running"):
        detail += f"; {'training' if holder else 'interrupted while training'} {running['commit'][:7]} since " \
                  f"{running.get('since', '?')}"
    if failed := state.get("failed"):
        return [Check("watcher", False, f"{detail}; the round for {failed['commit'][:7]} failed at {failed['at']}: "
                      f"{failed.get('error', '?')}", f"see {watch.LOG.as_posix()}; push a fix (a new commit "
                      "starts a new round)")]
    if since := state.get("unreachable_since"):
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

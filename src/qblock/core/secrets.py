"""Secrets never land in git, on the NAS or in MLflow.

A chat webhook URL carries the bot's token (Telegram's ``/bot<digits>:<token>/``, Slack's
``hooks.slack.com/services/...``), and a database URL its password (``user:password@``). Such a
value is per machine: it comes from the environment or from ``.qblock/machine.yaml`` (never
committed), never from ``conf/`` (committed, composed into ``params.yaml``, pushed to the NAS and
logged to MLflow). This module spots one written where it would be shared, says where it
belongs instead, and prints a URL without its secret parts. Its scanner reads what a project shares
through git (the tracked files, their history, the commits about to be pushed, DVC's committed config):
`qblock doctor` and every push ask it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qblock.core import machine

WEBHOOK_ENV = "QBLOCK_NOTIFY_WEBHOOK_URL"
WEBHOOK_MACHINE_KEY = "notify_webhook_url"
UI_PASSWORD_ENV = "QBLOCK_UI_PASSWORD"
UI_PASSWORD_MACHINE_KEY = "ui_password"

_Rule = tuple[str, "re.Pattern[str]", Callable[["re.Match[str]"], str]]
_RULES: list[_Rule] = [
    ("a Telegram bot token", re.compile(r"bot(\d{5,}):[A-Za-z0-9_-]{20,}"), lambda m: f"bot{m[1]}:***"),
    ("a Slack webhook", re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers))/[A-Za-z0-9_/-]{8,}"),
     lambda m: f"{m[1]}/***"),
    ("a Discord webhook", re.compile(r"(discord(?:app)?\.com/api/webhooks/\d+)/[A-Za-z0-9_-]{20,}"),
     lambda m: f"{m[1]}/***"),
    ("a password in a URL",  # not a placeholder: `***` (redacted), `<password>`, `${VAR}`
     re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s/:@'\"]+):(?![*]+@|<|\$\{)[^\s/@'\"]+@", re.IGNORECASE),
     lambda m: f"{m[1]}:***@"),
    ("a token in a URL", re.compile(
        r"([?&](?:token|access_token|auth|api_?key|key|secret|password|passwd|sig|signature)=)[^&\s'\"]{6,}",
        re.IGNORECASE), lambda m: f"{m[1]}***"),
]


def find(text: str) -> Iterator[tuple[str, int]]:
    """(what kind of secret, its offset) for each secret-looking part of ``text``."""
    for kind, pattern, _ in _RULES:
        for match in pattern.finditer(text):
            yield kind, match.start()


def kind_of(text: str) -> str | None:
    return next((kind for kind, _ in find(text)), None)


def redact(text: str) -> str:
    """``text`` with every secret-looking part masked (the host and the rest stay readable)."""
    for _, pattern, mask in _RULES:
        text = pattern.sub(mask, text)
    return text


def host(url: str | None) -> str:
    """The host a URL points at ('none' for no URL): all that may be logged about a webhook."""
    if not url:
        return "none"
    return urlsplit(url).hostname or "?"


def where_it_belongs(key: str) -> str:
    if key == "notify.webhook_url":
        return (f"put the URL in the environment variable {WEBHOOK_ENV}, or as `{WEBHOOK_MACHINE_KEY}: ...` in "
                f"{machine.MACHINE_FILE.as_posix()} (per machine, never committed), and set notify.webhook_url: null "
                f"in conf/config.yaml")
    if key == "mlflow.tracking_uri":
        return ("use a URI without the password and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the "
                "environment (MLflow reads them itself)")
    return "move it to an environment variable on each machine"


def in_params(data: dict[str, Any], prefix: str = "") -> tuple[str, str] | None:
    """(key, kind) of the first parameter holding a secret; None when there is none."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if found := in_params(value, name + "."):
                return found
        elif isinstance(value, str) and (kind := kind_of(value)):
            return name, kind
    return None


def message(source: str, key: str, kind: str) -> str:
    return (f"{source}: `{key}` holds {kind}, and {source} is shared (git, the NAS, MLflow): "
            f"{where_it_belongs(key)}. If it was ever committed or pushed, rotate it (a new token or password).")


def webhook_url(configured: str | None, root: Path | None = None) -> str | None:
    """This machine's webhook: ${QBLOCK_NOTIFY_WEBHOOK_URL}, else .qblock/machine.yaml, else what conf/ says
    (a URL with no secret in it, such as a LAN address)."""
    return os.environ.get(WEBHOOK_ENV) or machine.setting(WEBHOOK_MACHINE_KEY, root) or configured


def ui_password(root: Path | None = None) -> str | None:
    return os.environ.get(UI_PASSWORD_ENV) or machine.setting(UI_PASSWORD_MACHINE_KEY, root)


# -- the scanner: what git shares, read for secrets

SHARED_FILES = ("params.yaml", "dvc.lock")  # scanned even when git does not track them yet
MAX_SCANNED_BYTES = 2_000_000  # a larger file is data, not something a person typed a URL into
MAX_HISTORY_BYTES = 50_000_000  # of `git log -p` read for secrets in earlier commits
# qblock's own code and its tests: their history (every project's, since each starts as a clone of qblock)
# holds placeholders and made-up test tokens; a person's secrets go into conf/, scripts, configs, notes
OWN_CODE = ("src/", "tests/", "bench/")
DVC_CREDENTIAL = "a credential of DVC's remote"
# Keys of DVC's remote config that hold credentials (S3, Azure, SSH, WebDAV, Google Drive ...)
DVC_CREDENTIALS = re.compile(r"^\s*(access_key_id|secret_access_key|session_token|password|account_key|sas_token|"
                             r"connection_string|key_secret|gdrive_client_secret|token)\s*=\s*\S+", re.MULTILINE)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True)


def in_text(name: str, text: str) -> list[str]:
    """Each secret in a file's ``text`` as "NAME line N: a Telegram bot token"."""
    return [f"{name} line {text.count(chr(10), 0, offset) + 1}: {kind}" for kind, offset in find(text)]


def in_tracked_files(root: Path) -> list[str]:
    """Secrets in the files git tracks as they are in the work tree (and params.yaml, dvc.lock)."""
    listed = _git(root, "ls-files", "-z").stdout.decode("utf-8", errors="surrogateescape").split("\0")
    found = []
    for name in sorted({n for n in listed if n} | {n for n in SHARED_FILES if (root / n).is_file()}):
        path = root / name
        try:
            if not path.is_file() or path.stat().st_size > MAX_SCANNED_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # binary files hold no URL a person typed
            continue
        found += in_text(name, text)
    return found


def in_dvc_config(root: Path) -> list[str]:
    """Credentials in a committed .dvc/config (a `dvc remote modify` without --local)."""
    config = root / ".dvc" / "config"
    if not _git(root, "ls-files", ".dvc/config").stdout.strip() or not config.is_file():
        return []
    text = config.read_text(encoding="utf-8", errors="replace")
    return [f".dvc/config line {text.count(chr(10), 0, m.start()) + 1}: {DVC_CREDENTIAL} ({m[1]})"
            for m in DVC_CREDENTIALS.finditer(text)]


def in_history(root: Path, current: set[tuple[str, str]]) -> list[str]:
    """Secrets added by an earlier commit of any branch and since removed: still in the history the origin
    keeps (``current``: the (file, kind) pairs already reported from the work tree)."""
    log = _git(root, "log", "--all", "-p", "--no-color", "--no-ext-diff", "--unified=0", "--format=@@commit %h")
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
            kinds = [kind for kind, _ in find(raw)]
            if name == ".dvc/config" and DVC_CREDENTIALS.match(raw[1:]):
                kinds.append(DVC_CREDENTIAL)
            for kind in kinds:
                if (name, kind) not in current:
                    found[(commit, name, kind)] = None
    return [f"commit {commit} {name}: {kind} (removed since, still in the history)" for commit, name, kind in found]


def in_unpushed_commits(root: Path) -> list[str]:
    """Secrets in the files the commits not yet on the origin change, as they are at HEAD (all of HEAD's
    history when the branch follows no origin yet)."""
    ahead = _git(root, "rev-list", "--count", "@{upstream}..HEAD")
    span = "@{upstream}..HEAD" if ahead.returncode == 0 else "HEAD"
    changed = _git(root, "log", "--format=", "--name-only", "-z", span).stdout.decode("utf-8", errors="replace")
    found = []
    for name in sorted({n.strip() for n in changed.split("\0") if n.strip()}):
        blob = _git(root, "show", f"HEAD:{name}")
        if blob.returncode or len(blob.stdout) > MAX_SCANNED_BYTES:
            continue  # deleted since, or a large file nobody typed a URL into
        found += in_text(name, blob.stdout.decode("utf-8", errors="replace"))
    return found

"""Secrets never land in git, on the NAS or in MLflow.

A chat webhook URL carries the bot's token (Telegram's ``/bot<digits>:<token>/``, Slack's
``hooks.slack.com/services/...``), and a database URL its password (``user:password@``). Such a
value is per machine: it comes from the environment or from ``.qblock/machine.yaml`` (never
committed), never from ``conf/`` (committed, composed into ``params.yaml``, pushed to the NAS and
logged to MLflow). This module spots one written where it would be shared, says where it
belongs instead, and prints a URL without its secret parts.
"""

from __future__ import annotations

import os
import re
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

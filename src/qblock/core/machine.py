"""This machine's own settings, in `.qblock/machine.yaml` at the project root: never committed
(`.gitignore`), never pushed. Where the app's folder is on this machine, the webhook URL and the
UI password live here (or in the environment), not in `conf/`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from qblock.core import files
from qblock.core.errors import UserError

MACHINE_FILE = Path(".qblock") / "machine.yaml"


def project_root() -> Path:
    """DVC's idea of the project root ($DVC_ROOT, the real repository even in a queued experiment's copy)."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def settings(root: Path | None = None) -> dict[str, Any]:
    path = (root or project_root()) / MACHINE_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{path}: expected `key: value` lines")
    return data or {}


def setting(key: str, root: Path | None = None) -> Any:
    return settings(root).get(key)


def remember(key: str, value: Any, root: Path | None = None) -> None:
    path = (root or project_root()) / MACHINE_FILE
    files.write_text(path, yaml.safe_dump(settings(root) | {key: value}, allow_unicode=True))

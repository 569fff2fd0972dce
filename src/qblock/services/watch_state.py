"""What `qblock watch` remembers between checks (`.qblock/watch.json`), as types.

The watcher writes it after every check; `qblock doctor` reads it to say how the last round
went. A file from an older qblock, or one a person edited, is read field by field: a field of the
wrong shape is left at its default rather than stopping either of them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from qblock.core import files

STATE = Path(".qblock") / "watch.json"


@dataclass
class Running:
    """A round under way (or stopped midway: the next start finishes it)."""

    commit: str
    since: str = "?"


@dataclass
class Failure:
    """The last round that failed: no new round for this commit until a newer one arrives."""

    commit: str
    at: str = "?"
    error: str = "?"


@dataclass
class Trained:
    """A round that trained: the labels' commit and the commit it pushed."""

    labels: str
    result: str
    at: str = "?"
    text: str | None = None


@dataclass
class WatchState:
    pid: int | None = None
    last_check: str | None = None
    handled: list[str] = field(default_factory=list)  # commits never to run a round for again
    running: Running | None = None
    failed: Failure | None = None
    trained: list[Trained] = field(default_factory=list)
    dirty: list[str] | None = None  # the uncommitted changes last said (said once per set)
    unreachable_since: str | None = None
    unreachable_notified: bool = False

    @property
    def last_trained(self) -> Trained | None:
        return self.trained[-1] if self.trained else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _record(cls: type, value: Any) -> Any:
    """A Running/Failure/Trained from its dict, or None when it is not one."""
    if not isinstance(value, dict):
        return None
    names = {f.name for f in fields(cls)}
    try:
        return cls(**{k: v for k, v in value.items() if k in names and (v is None or isinstance(v, str))})
    except TypeError:  # a required field missing
        return None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def from_json(data: dict[str, Any]) -> WatchState:
    def text(key: str) -> str | None:
        return data[key] if isinstance(data.get(key), str) else None

    return WatchState(
        pid=data["pid"] if isinstance(data.get("pid"), int) else None,
        last_check=text("last_check"),
        handled=_strings(data.get("handled")),
        running=_record(Running, data.get("running")),
        failed=_record(Failure, data.get("failed")),
        trained=[t for item in _items(data.get("trained")) if (t := _record(Trained, item)) is not None],
        dirty=_strings(data.get("dirty")) if isinstance(data.get("dirty"), list) else None,
        unreachable_since=text("unreachable_since"),
        unreachable_notified=data.get("unreachable_notified") is True,
    )


def read_state(root: Path) -> WatchState | None:
    """The watcher's state here; None when this machine never watched (or the file cannot be read)."""
    try:
        data = json.loads((root / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return from_json(data) if isinstance(data, dict) else None


def write_state(root: Path, state: WatchState) -> None:
    files.write_text(root / STATE, json.dumps(state.to_json(), indent=1, ensure_ascii=False))

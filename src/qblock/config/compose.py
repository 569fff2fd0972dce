"""``conf/`` (Hydra) -> ``params.yaml``, composed the way ``dvc exp run`` does it, so the two
never disagree silently: ``check_params_in_sync`` says what to run when they do."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from qblock.config.schema import PARAMS_FILE, Params, parse_params, read_yaml
from qblock.core import files
from qblock.core.errors import UserError

CONF_DIR = "conf"
GROUPS = {"train": "preset", "model": "name"}  # conf/ groups, and the key that names the chosen file
PARAMS_HEADER = (
    "# Generated from conf/ by `qblock params`: do not edit. Change conf/ and run `qblock params`,\n"
    "# or try a variant with `dvc exp run -S train.epochs=3`.\n"
)


def compose_params(root: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Compose ``conf/`` with Hydra, as ``dvc exp run`` does, into a plain dict."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    conf_dir = (root / CONF_DIR).resolve()
    if not (conf_dir / "config.yaml").is_file():
        raise UserError(f"{conf_dir / 'config.yaml'}: not found; run qblock from the project root")
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
            cfg = compose(config_name="config", overrides=overrides or [])
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(f"conf/: {exc}") from None
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    return {str(key): value for key, value in data.items()}


def conf_file(root: Path, data: dict[str, Any], section: str) -> Path:
    """The conf/ file a section's keys are written in (a group's chosen file, else config.yaml)."""
    if section in GROUPS:
        chosen = (data.get(section) or {}).get(GROUPS[section])
        candidate = root / CONF_DIR / section / f"{chosen}.yaml"
        if chosen and candidate.is_file():
            return candidate
    return root / CONF_DIR / "config.yaml"


def checked(root: Path, data: dict[str, Any]) -> Params:
    """``data`` composed from conf/, checked against the schema; an error names the conf/ file."""
    try:
        return parse_params(data, "conf/")
    except UserError as exc:
        text = str(exc)
        key = text.split("`", 2)[1] if text.count("`") >= 2 else ""
        where = conf_file(root, data, key.split(".")[0]).relative_to(root).as_posix() if key else "conf/"
        raise UserError(where + text[len("conf/"):]) from None


def write_params(root: Path) -> Path:
    """Compose ``conf/``, check it against the schema, and write ``params.yaml``."""
    data = compose_params(root)
    checked(root, data)
    path = root / PARAMS_FILE
    files.write_text(path, PARAMS_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def differences(expected: Any, actual: Any, prefix: str = "") -> list[tuple[str, str, Any, Any]]:
    """(key, how, conf/'s value, params.yaml's value) for every leaf where the two differ."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[tuple[str, str, Any, Any]] = []
        for key in sorted(set(expected) | set(actual), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in actual:
                out.append((name, "missing", expected[key], None))
            elif key not in expected:
                out.append((name, "extra", None, actual[key]))
            else:
                out.extend(differences(expected[key], actual[key], name))
        return out
    return [(prefix, "changed", expected, actual)] if expected != actual else []


def describe(difference: tuple[str, str, Any, Any]) -> str:
    key, how, expected, actual = difference
    if how == "missing":
        return f"{key}: in conf/, missing from params.yaml"
    if how == "extra":
        return f"{key}: in params.yaml, not in conf/"
    return f"{key}: conf/ says {expected!r}, params.yaml says {actual!r}"


def in_dvc_experiment() -> bool:
    """True inside `dvc exp run`, where DVC itself composed params.yaml from conf/ and -S overrides."""
    return bool(os.environ.get("DVC_EXP_NAME") or os.environ.get("DVC_EXP_BASELINE_REV"))


def check_params_in_sync(root: Path) -> list[str]:
    """The keys where ``params.yaml`` differs from what ``conf/`` composes to (empty when in sync)."""
    return [describe(d) for d in differences(compose_params(root), read_yaml(root / PARAMS_FILE))]


def overrides_from_conf(root: Path, params: Params) -> list[str]:
    """How ``params`` differs from conf/'s defaults, as Hydra overrides (``train=cpu train.epochs=1``).

    Inside `dvc exp run -S ...` params.yaml was composed with the overrides, so these are them;
    a run from a plain `dvc repro` has none.
    """
    values = asdict(params)
    base = compose_params(root)
    groups: list[str] = []
    for group, key in GROUPS.items():  # a preset may pick the model itself
        chosen = values[group][key]
        if chosen != base.get(group, {}).get(key) and (root / CONF_DIR / group / f"{chosen}.yaml").is_file():
            groups.append(f"{group}={chosen}")
            base = compose_params(root, groups)
    leaves = []
    for key, how, _, actual in differences(base, values):
        leaves.append(f"{key}={actual}" if how != "missing" else f"{key} (not set)")
    return groups + leaves

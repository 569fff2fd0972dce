"""The typed parameters: ``conf/`` (Hydra) composes into ``params.yaml``, which every stage reads.

``load_params`` checks ``params.yaml`` against the dataclasses below, so an unknown key or a
wrong type is an error naming the key at load time, not a ``KeyError`` in epoch 40.
``compose_params`` composes ``conf/`` the way ``dvc exp run`` does, so the two never disagree
silently: ``check_params_in_sync`` says what to run when they do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from qblock.errors import UserError

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
PARAMS_HEADER = (
    "# Generated from conf/ by `qblock params`: do not edit. Change conf/ and run `qblock params`,\n"
    "# or try a variant with `dvc exp run -S train.epochs=3`.\n"
)


@dataclass
class Paths:
    dataset_root: str = "data/dataset_root"
    export_dir: str = "data/yolo"
    split_dir: str = "data/split"
    reports_dir: str = "reports"
    model_dir: str = "models"
    train_dir: str = "runs/train"
    eval_dir: str = "runs/evaluate"
    metrics_file: str = "metrics.json"
    plots_dir: str = "plots"


@dataclass
class ExportParams:
    class_names: list[str] = field(default_factory=lambda: ["Question_Block"])
    class_field: str | None = None
    class_map: dict[str, str] = field(default_factory=dict)
    max_overhang: float = 0.02
    duplicate_boxes: str = "warn"


@dataclass
class SplitParams:
    val_fraction: float = 0.25
    test_fraction: float = 0.0
    salt: str = "qblock"
    pin: dict[str, str] = field(default_factory=dict)


@dataclass
class ValidateParams:
    sample_pages: int = 6


@dataclass
class ModelParams:
    name: str = "yolov8n"
    architecture: str = "yolov8n.yaml"
    weights: str | None = None


@dataclass
class TrainParams:
    preset: str = "cpu"
    epochs: int = 60
    imgsz: int = 256
    batch: int = 16
    nbs: int = 64
    device: str = "cpu"
    workers: int = 2
    cpu_threads: int = 0
    patience: int = 100
    seed: int = 0
    optimizer: str = "auto"
    lr0: float = 0.01
    cos_lr: bool = False
    warmup_epochs: float = 3.0
    amp: bool = True
    cache: bool = False
    rect: bool = False
    mosaic: float = 1.0
    close_mosaic: int = 10
    fliplr: float = 0.5
    flipud: float = 0.0
    scale: float = 0.5
    translate: float = 0.1
    degrees: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    mixup: float = 0.0


@dataclass
class EvaluateParams:
    conf: float = 0.001
    iou: float = 0.7
    batch: int = 8
    champion_metric: str = "mAP50-95"

    def __post_init__(self) -> None:
        if self.champion_metric not in ("mAP50", "mAP50-95"):
            raise UserError(f"evaluate.champion_metric: {self.champion_metric!r}; use mAP50 or mAP50-95")


@dataclass
class MlflowParams:
    tracking_uri: str | None = None
    artifact_root: str | None = None
    experiment: str = "qblock"


@dataclass
class NotifyParams:
    webhook_url: str | None = None
    timeout_s: float = 10.0


@dataclass
class Params:
    paths: Paths = field(default_factory=Paths)
    export: ExportParams = field(default_factory=ExportParams)
    split: SplitParams = field(default_factory=SplitParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    mlflow: MlflowParams = field(default_factory=MlflowParams)
    notify: NotifyParams = field(default_factory=NotifyParams)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found. Run `qblock params` to compose it from conf/.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections (paths, export, train, ...)")
    return data


def parse_params(data: dict[str, Any], source: str = PARAMS_FILE) -> Params:
    """Check ``data`` against the schema and return it typed; errors name the key."""
    missing = [name for name in Params.__dataclass_fields__ if name not in data]
    if missing:
        raise UserError(f"{source}: missing section(s) {', '.join(missing)}. Run `qblock params`.")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Params), data)
        params = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = str(exc).splitlines()[0]
        raise UserError(f"{source}: bad value at `{key}`: {reason}") from None
    assert isinstance(params, Params)
    return params


def load_params(root: Path | None = None) -> Params:
    """Read and check ``params.yaml`` at the project root."""
    path = (root or Path.cwd()) / PARAMS_FILE
    return parse_params(_read_yaml(path), str(path))


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
    return data


def write_params(root: Path) -> Path:
    """Compose ``conf/``, check it against the schema, and write ``params.yaml``."""
    data = compose_params(root)
    parse_params(data, "conf/")
    path = root / PARAMS_FILE
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(PARAMS_HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
    return path


def _differences(expected: Any, actual: Any, prefix: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(actual), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in actual:
                out.append(f"{name}: in conf/, missing from params.yaml")
            elif key not in expected:
                out.append(f"{name}: in params.yaml, not in conf/")
            else:
                out.extend(_differences(expected[key], actual[key], name))
        return out
    if expected != actual:
        return [f"{prefix}: conf/ says {expected!r}, params.yaml says {actual!r}"]
    return []


def in_dvc_experiment() -> bool:
    """True inside `dvc exp run`, where DVC itself composed params.yaml from conf/ and -S overrides."""
    return bool(os.environ.get("DVC_EXP_NAME") or os.environ.get("DVC_EXP_BASELINE_REV"))


def check_params_in_sync(root: Path) -> list[str]:
    """The keys where ``params.yaml`` differs from what ``conf/`` composes to (empty when in sync)."""
    return _differences(compose_params(root), _read_yaml(root / PARAMS_FILE))


def overrides_from_conf(root: Path, params: dict[str, Any]) -> list[str]:
    """How ``params`` differs from conf/'s defaults, as Hydra overrides (``train=cpu train.epochs=1``).

    Inside `dvc exp run -S ...` params.yaml was composed with the overrides, so these are them;
    a run from a plain `dvc repro` has none.
    """
    base = compose_params(root)
    groups: list[str] = []
    for group, key in (("train", "preset"), ("model", "name")):  # a preset may pick the model itself
        chosen = params.get(group, {}).get(key)
        known = (root / CONF_DIR / group / f"{chosen}.yaml").is_file()
        if chosen and chosen != base.get(group, {}).get(key) and known:
            groups.append(f"{group}={chosen}")
            base = compose_params(root, groups)
    leaves = []
    for line in _differences(base, params):
        key, _, rest = line.partition(": ")
        if "params.yaml says " in rest:
            leaves.append(f"{key}={rest.split('params.yaml says ', 1)[1]}")
        else:
            leaves.append(f"{key} ({rest})")
    return groups + leaves

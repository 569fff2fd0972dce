"""The typed parameters every stage reads from ``params.yaml`` (composed from ``conf/``).

No key has a default here: every value comes from ``conf/``, so a key deleted or misspelled
there is an error at load time naming the key and the file, never a silent fallback. Keys with
a fixed set of values (``choices`` in their field metadata) are checked too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from qblock.core import secrets
from qblock.core.errors import UserError
from qblock.core.metric_names import CHAMPION_METRICS

PARAMS_FILE = "params.yaml"


QBLOCK_ONLY = {"ultralytics": False}  # field metadata: a train key qblock uses itself, not passed to ultralytics


@dataclass
class Paths:
    dataset_root: str
    export_dir: str
    split_dir: str
    reports_dir: str
    model_dir: str
    train_dir: str
    eval_dir: str
    metrics_file: str
    plots_dir: str


@dataclass
class ExportParams:
    class_names: list[str]
    class_field: str | None
    class_map: dict[str, str | None]  # a tool's class -> one of class_names; null drops its boxes
    max_overhang: float
    duplicate_boxes: str = field(metadata={"choices": ("warn", "error")})


@dataclass
class SplitParams:
    val_fraction: float
    test_fraction: float
    salt: str
    pin: dict[str, str]


@dataclass
class ValidateParams:
    sample_pages: int


@dataclass
class ModelParams:
    name: str
    architecture: str
    weights: str | None


@dataclass
class TrainParams:
    """ultralytics' train() arguments of the same names, and seven of qblock's own."""

    preset: str = field(metadata=QBLOCK_ONLY)
    cpu_threads: int = field(metadata=QBLOCK_ONLY)
    system_metrics: bool = field(metadata=QBLOCK_ONLY)  # MLflow's CPU, memory and GPU charts for the run
    ema_tau: float = field(metadata=QBLOCK_ONLY)  # optimizer steps for the weights' moving average to settle
    imgsz_max: int = field(metadata=QBLOCK_ONLY)  # fewer training pages than full_pages are seen larger, up to this
    full_pages: int = field(metadata=QBLOCK_ONLY)  # training pages imgsz is meant for (model/image_size.py)
    box_reach: int = field(metadata=QBLOCK_ONLY)  # px: the size is capped where large boxes stay within it; 0: never
    epochs: int
    imgsz: int
    batch: int
    nbs: int
    device: str
    workers: int
    patience: int
    seed: int
    optimizer: str
    lr0: float
    cos_lr: bool
    warmup_epochs: float
    amp: bool
    cache: bool
    rect: bool
    mosaic: float
    close_mosaic: int
    fliplr: float
    flipud: float
    scale: float
    translate: float
    degrees: float
    hsv_h: float
    hsv_s: float
    hsv_v: float
    mixup: float
    box: float  # the box-loss gain (how much box precision weighs against finding and classifying)
    plots: bool  # ultralytics' training pictures (loss and mAP curves, batches, label spread) in runs/train

    def ultralytics_arguments(self) -> dict[str, Any]:
        """The fields ultralytics' train() takes as they are (all but qblock's own)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("ultralytics", True)}


@dataclass
class EvaluateParams:
    conf: float
    iou: float
    batch: int
    champion_metric: str = field(metadata={"choices": CHAMPION_METRICS})


@dataclass
class MlflowParams:
    tracking_uri: str | None
    artifact_root: str | None
    experiment: str


@dataclass
class NotifyParams:
    webhook_url: str | None
    timeout_s: float


@dataclass
class Params:
    paths: Paths
    export: ExportParams
    split: SplitParams
    validate: ValidateParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    mlflow: MlflowParams
    notify: NotifyParams


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found. Run `qblock params` to compose it from conf/.") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections (paths, export, train, ...)")
    return data


def _check_choices(node: object, prefix: str = "") -> str | None:
    """The first field whose value is outside its ``choices``, as a message; None when all are fine."""
    for item in fields(node):  # type: ignore[arg-type]
        value, name = getattr(node, item.name), f"{prefix}{item.name}"
        if is_dataclass(value):
            if problem := _check_choices(value, name + "."):
                return problem
        elif "choices" in item.metadata and value not in item.metadata["choices"]:
            return f"`{name}` is {value!r}; use one of {', '.join(item.metadata['choices'])}"
    return None


def parse_params(data: dict[str, Any], source: str = PARAMS_FILE) -> Params:
    """Check ``data`` against the schema and return it typed; errors name the key and ``source``."""
    missing = [name for name in Params.__dataclass_fields__ if name not in data]
    if missing:
        raise UserError(f"{source}: missing section(s) {', '.join(missing)}. Run `qblock params`.")
    export = data.get("export")
    if isinstance(export, dict) and isinstance(export.get("class_map"), dict):  # YAML reads `0: Question` as an int
        data = data | {"export": export | {"class_map": {str(k): v for k, v in export["class_map"].items()}}}
    try:
        params = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Params), data))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        reason = str(exc).splitlines()[0]
        if "missing mandatory value" in reason:
            reason = "missing: every key must be set in conf/ (there are no built-in defaults)"
        elif "not in" in reason:
            reason = f"unknown key ({reason}); is it misspelled?"
        raise UserError(f"{source}: bad value at `{key}`: {reason}") from None
    assert isinstance(params, Params)
    if problem := _check_choices(params):
        raise UserError(f"{source}: {problem}")
    if found := secrets.in_params(asdict(params)):
        raise UserError(secrets.message(source, *found))
    return params


def load_params(root: Path | None = None) -> Params:
    """Read and check ``params.yaml`` at the project root."""
    path = (root or Path.cwd()) / PARAMS_FILE
    return parse_params(read_yaml(path), str(path))

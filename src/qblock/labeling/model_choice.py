"""Which model proposes, and how it runs: the registry's champion (else `models/best.pt`), a registered
version, an MLflow run or a .pt file, with the threshold and ink snapping evaluate chose for it; on a
machine without a GPU, the OpenVINO copy of these exact weights when one was made (`qblock
export-model`; `labeling/cpu_model.py`), else PyTorch, saying so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from qblock.config.schema import Params
from qblock.core.errors import UserError
from qblock.model.image_size import trained_imgsz
from qblock.quality.ink_snap import SnapRule

DEFAULT_CONF = 0.25  # ultralytics' own default, when no threshold was chosen on val


@dataclass
class ModelChoice:
    weights: Path
    source: dict[str, Any]  # where it came from, written into every proposal
    conf: float | None  # the threshold chosen on val, when known
    snap: SnapRule | None = None  # the ink-snapping rule evaluate kept, when known

    @property
    def identity(self) -> str:
        """What makes two proposals from "the same model": the version, else the file's hash."""
        if "version" in self.source:
            return f"{self.source['registered_model']} v{self.source['version']}"
        return self.source.get("sha256", "?")


def file_choice(weights: Path) -> ModelChoice:
    if not weights.is_file():
        raise UserError(f"{weights}: no such model file. Train one (`dvc repro`) or fetch it (`qblock pull-model`).")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    return ModelChoice(weights, {"file": weights.as_posix(), "sha256": digest[:16]}, None)


def choose_model(spec: str | None, params: Params, root: Path) -> ModelChoice:
    """``spec``: None (the registry's champion, else models/best.pt), a .pt file, a registered
    version (`3` or `v3`), or an MLflow run id."""
    from qblock.model import mlflow_store, registry

    cache = root / ".qblock" / "models"
    local = root / params.paths.model_dir / "best.pt"
    if spec is None:
        found = registry.registered_weights(params.mlflow, cache)
        if found is None:
            return file_choice(local)
    elif spec.endswith(".pt"):
        return file_choice(Path(spec))
    elif spec.lstrip("vV").isdigit():
        found = registry.registered_weights(params.mlflow, cache, version=spec.lstrip("vV"))
        if found is None:
            raise UserError(f"--model {spec}: no such version of the registered model in "
                            f"{mlflow_store.tracking_uri(params.mlflow)}")
    else:
        found = registry.registered_weights(params.mlflow, cache, run_id=spec)
        if found is None:
            raise UserError(f"--model {spec}: not a .pt file, a registered version or an MLflow run of "
                            f"{mlflow_store.tracking_uri(params.mlflow)}")
    weights, source = found
    conf = source.pop("conf_threshold", None)
    snap = SnapRule.from_json(source.pop("ink_snap", None))
    return ModelChoice(weights, source, float(conf) if conf else None, snap if snap and snap.active else None)


def load_model(choice: ModelChoice, params: Params, root: Path, console: Console) -> tuple[Any, int, str, str]:
    """(the model, the image size to run it at, the device, the runtime).

    On a machine without a GPU (the laptop, whatever the preset says): the exported copy of these exact
    weights when one was made (`labeling/cpu_model.py`), else PyTorch on the CPU, saying how to get the faster
    copy. The size is the one the model was trained at (its checkpoint keeps it), not today's preset: a
    version trained at 320 runs at 320 after conf/ moved on to 448."""
    import torch
    from ultralytics import YOLO

    from qblock.labeling import cpu_model

    device = str(params.train.device)
    if device != "cpu" and not torch.cuda.is_available():
        device = "cpu"
    if device == "cpu":
        copy = cpu_model.find_copy(root, choice.weights)
        if copy is not None:
            console.print(f"propose: running the {copy.format} copy of the model ({copy.path})")
            if copy.format == "openvino":
                cpu_model.full_precision_on_cpu()
                device = "intel:cpu"  # the CPU, in float32: never an integrated GPU in float16 (boxes move)
            return YOLO(str(copy.path), task="detect"), copy.imgsz, device, copy.format
        console.print(f"propose: running PyTorch on the CPU: no {cpu_model.DEFAULT_FORMAT} copy of this model yet; "
                      f"`qblock export-model` makes one, which runs faster")
    model = open_weights(choice.weights)
    return model, trained_imgsz(model) or params.train.imgsz, device, "pytorch"


def open_weights(weights: Path):
    """ultralytics' model from a .pt file, or one line naming a damaged file (a copy cut short, a full disk)."""
    from ultralytics import YOLO

    if not weights.is_file():
        raise UserError(f"{weights}: no such model file; `qblock pull-model` fetches the trained model")
    try:
        return YOLO(str(weights))
    except Exception as exc:  # whatever torch says of a cut file, the answer is the same
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"{weights}: damaged, or not a model ({type(exc).__name__}: {reason}); "
                        "`qblock pull-model` fetches the model again from the NAS") from None

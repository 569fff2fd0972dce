"""The model's copy for a CPU without a GPU (the laptop): ultralytics' own OpenVINO export.

PyTorch on a 2-core CPU ran the desktop's model (yolov8m at 1024 px) at 1.8 s a page; its OpenVINO copy
at 0.85 s, 2.1x the speed (`bench/propose.py`). A copy is made once per
weights file and kept under `.qblock/exported/{sha256 of the .pt}-{format}/`: it is found by the hash
of the weights it was made from, so it is never used with other weights. A new model (pull-model,
another registered version) has no copy until one is made (`qblock export-model`; pull-model makes
one itself when the runtime is installed), and propose says so and runs PyTorch meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import shutil
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qblock.core.errors import UserError
from qblock.model.image_size import trained_imgsz

# format -> (the package that runs it, what ultralytics' export of `best.pt` writes). ONNX would fit here too;
# OpenVINO alone is installed and measured (bench/propose.py).
FORMATS = {"openvino": ("openvino", "best_openvino_model")}
DEFAULT_FORMAT = "openvino"
STAMP = "qblock.json"


@dataclass(frozen=True)
class ExportedCopy:
    path: Path  # what ultralytics' YOLO() loads: the OpenVINO folder
    format: str
    imgsz: int  # the size the weights were trained at, which the copy runs at


def weights_digest(weights: Path) -> str:
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _folder(root: Path, digest: str, fmt: str) -> Path:
    return root / ".qblock" / "exported" / f"{digest[:16]}-{fmt}"


def runtime_installed(fmt: str) -> bool:
    return importlib.util.find_spec(FORMATS[fmt][0]) is not None


def find_copy(root: Path, weights: Path, fmt: str = DEFAULT_FORMAT) -> ExportedCopy | None:
    """The exported copy made from exactly these weights, or None (none made, or its runtime is missing)."""
    digest = weights_digest(weights)
    folder = _folder(root, digest, fmt)
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = folder / FORMATS[fmt][1]
    if stamp.get("sha256") != digest or not path.exists() or not runtime_installed(fmt):
        return None
    return ExportedCopy(path, fmt, int(stamp["imgsz"]))


@contextlib.contextmanager
def _warnings_only(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


def make_copy(root: Path, weights: Path, fmt: str = DEFAULT_FORMAT) -> ExportedCopy:
    """Export ``weights`` for the CPU (a few seconds to a minute), at the size they were trained at.

    Written into a temporary folder and renamed when complete: an interrupted export leaves no copy
    that propose would trust."""
    package = FORMATS[fmt][0]
    if not runtime_installed(fmt):
        raise UserError(f"export-model: the `{package}` package ({fmt}) is not installed in this "
                        f"environment (pip install {package})")
    if not weights.is_file():
        raise UserError(f"{weights}: no such model file. Train one (`dvc repro`) or fetch it (`qblock pull-model`).")
    from qblock.model.yolo_env import prepare_ultralytics

    prepare_ultralytics(root)
    no_telemetry()
    from ultralytics import YOLO

    digest = weights_digest(weights)
    folder = _folder(root, digest, fmt)
    work = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copyfile(weights, work / "best.pt")
    model = YOLO(str(work / "best.pt"))
    imgsz = trained_imgsz(model)
    if imgsz is None:
        raise UserError(f"{weights}: the checkpoint does not say the image size it was trained at; "
                        f"it is not a model `qblock train` wrote")
    # dynamic: pages keep their aspect (letterboxed to a multiple of 32, as PyTorch runs them), so the
    # copy finds the boxes PyTorch finds; a fixed square input would pad every page to 1024x1024
    # ultralytics' export summary (paths, a netron.app link) and torch's notes on its own tracer are not for
    # the user: qblock says what was made in one line
    with _warnings_only("ultralytics"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch")
        model.export(format=fmt, imgsz=imgsz, dynamic=True, device="cpu", verbose=False)  # float32
    (work / "best.pt").unlink()
    (work / STAMP).write_text(json.dumps({"sha256": digest, "format": fmt, "imgsz": imgsz,
                                          "weights": weights.as_posix()}), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    work.rename(folder)
    return ExportedCopy(folder / FORMATS[fmt][1], fmt, imgsz)


def no_telemetry() -> None:
    """Keep OpenVINO from counting and reporting its use, in this process; call before it is imported.

    `import openvino` imports its converter, which sends usage data to Google Analytics and keeps an id
    and a use counter under the user's home (`~/intel/`), unless a file there says no. Without its
    telemetry package the converter runs its own no-op stub: so in this process only, that package
    cannot be imported. Nothing of the user's is read or changed."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]


def full_precision_on_cpu() -> None:
    """Make OpenVINO run float models in float32 on the CPU, in this process.

    On CPUs with bfloat16 units (AVX512-BF16, AMX: this machine's EPYC, recent Xeons) OpenVINO runs a
    float32 model in bfloat16 unless told otherwise, and ultralytics tells it only on Windows. Measured
    here: boxes moved by 1-2 px against PyTorch's (IoU 0.987), what evaluate measured the crops with.
    float32 keeps them (IoU >= 0.99) and is still 2x PyTorch at 1024 px (bench/propose.py)."""
    no_telemetry()
    import openvino as ov

    if getattr(ov.Core.compile_model, "qblock_f32", False):
        return
    original = ov.Core.compile_model

    def compile_model(self, model, device_name=None, config=None, **kwargs):
        if device_name == "CPU":
            config = {"INFERENCE_PRECISION_HINT": "f32", **(config or {})}
        return original(self, model, device_name, config, **kwargs)

    compile_model.qblock_f32 = True  # type: ignore[attr-defined]
    ov.Core.compile_model = compile_model

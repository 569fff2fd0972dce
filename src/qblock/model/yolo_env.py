"""The one place that prepares ultralytics: offline, quiet, and with settings of its own.

ultralytics keeps settings in the user's home, turns on its own MLflow and DVCLive callbacks
when those packages are importable (DVCLive rewrites dvc.yaml), phones home, auto-installs
packages, downloads fonts and patches ``PIL.Image.open`` for the whole process. qblock points
it at a settings folder inside the project, turns all of that off there (and the patch back),
and never edits the user's global settings.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_INTEGRATIONS_OFF = {
    "sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
    "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False, "openvino_msg": False,
}


def settings_dir(root: Path) -> Path:
    return root / ".qblock" / "ultralytics"


def prepare_ultralytics(root: Path) -> None:
    """Configure ultralytics for this project; call before importing it."""
    config_dir = settings_dir(root).resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["YOLO_OFFLINE"] = "1"  # weights are files we name; never fetched behind our back
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "true")
    _install_fonts(config_dir)

    from ultralytics.utils import SETTINGS

    wanted = _INTEGRATIONS_OFF | {
        "runs_dir": str(root.resolve() / "runs"),
        "weights_dir": str(root.resolve() / "weights"),
        "datasets_dir": str(root.resolve() / "data"),
    }
    if any(SETTINGS.get(k) != v for k, v in wanted.items()):
        SETTINGS.update(wanted)
    _restore_pil_open()
    logger = logging.getLogger("ultralytics")
    if _not_ours not in logger.filters:
        logger.addFilter(_not_ours)


# Warnings ultralytics prints about qblock's own choices, which hold here: the cpu preset caches pages in RAM
# with no dataloader workers, and its runs repeat to the digit on one machine (docs/benchmarks.md)
_NOT_OURS = ("cache='ram' may produce non-deterministic",)


def _not_ours(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(words in message for words in _NOT_OURS)


def _restore_pil_open() -> None:
    """Undo ultralytics' global patch of ``PIL.Image.open``.

    On the first file Pillow cannot identify, the patch tries to pip-install pi-heif, and offline
    it raises ModuleNotFoundError instead of Pillow's clear "cannot identify image file" for the
    rest of the process. qblock trains on PNG and JPEG only (validate rejects the rest).
    """
    from PIL import Image
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def _install_fonts(config_dir: Path) -> None:
    """Give ultralytics' plots the fonts it would otherwise try to download."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = config_dir / name
        if not target.exists() and source.exists():
            shutil.copyfile(source, target)


@contextmanager
def without_coco_eval_notes() -> Iterator[None]:
    """Drops ultralytics' lines about faster-coco-eval.

    Asked to keep its predictions (``save_json``) on a dataset that is not COCO, ultralytics also
    tries a COCO evaluation with faster-coco-eval, which qblock does not install: three lines
    ("requirement not found", "unable to run") that change no metric and read like a failure.
    """

    def keep(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "faster-coco-eval" not in message and "faster_coco_eval" not in message

    logger = logging.getLogger("ultralytics")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def use_cpu_threads(model, threads: int) -> None:
    """Give CPU training and validation ``threads`` torch threads (0: every core).

    ultralytics sets torch to cores - 1 threads on the CPU, which on a 2-core machine leaves half
    of it idle while the model computes.
    """
    import torch

    count = threads or os.cpu_count() or 1

    def set_threads(owner) -> None:
        if getattr(owner, "device", None) is not None and owner.device.type == "cpu":
            torch.set_num_threads(count)

    model.add_callback("on_train_start", set_threads)
    model.add_callback("on_val_start", set_threads)


def average_weights_over(model, tau: float) -> None:
    """Let the weights' moving average (the model ultralytics validates and saves) reach its full decay
    after about ``tau`` optimizer steps instead of ultralytics' fixed 2,000.

    ultralytics' EMA decay is 0.9999 * (1 - exp(-steps / 2000)), set for COCO's thousands of steps an
    epoch. A few hundred pages make a few hundred steps in a whole training: the decay never passes
    0.3, the saved model is the last step's weights, and val mAP jumps from epoch to epoch (0.70 to
    0.78 mAP50-95 in the last five of the cpu preset's epochs), so which epoch is kept, and the crops,
    is chance. Applied at each epoch's start, so a resumed training (which rebuilds the EMA) keeps it.
    """
    import math

    def decay(steps: float) -> float:
        return 0.9999 * (1 - math.exp(-steps / tau))

    def apply(trainer) -> None:
        if getattr(trainer, "ema", None) is not None:
            trainer.ema.decay = decay

    model.add_callback("on_train_epoch_start", apply)


def clear_label_caches(label_dir: Path) -> None:
    """Delete ultralytics' *.cache files beside a label folder.

    The cache is keyed on file paths and summed sizes, so a same-size edit (class 0 -> 1) would
    be read from a stale cache; validate has already checked every label, so rescanning is safe.
    """
    for cache in label_dir.parent.glob("*.cache"):
        cache.unlink(missing_ok=True)


@contextmanager
def ultralytics_dataset(export_dir: Path, split_dir: Path, root: Path, test: bool = False) -> Iterator[Path]:
    """The dataset file for one train or val call, with no stale label cache before or after; with the
    test split only when ``test``."""
    from qblock.model.dataset_yaml import write_dataset_yaml

    data_yaml = write_dataset_yaml(export_dir, split_dir, root / ".qblock" / "data", test)
    clear_label_caches(export_dir / "labels")
    try:
        yield data_yaml
    finally:
        clear_label_caches(export_dir / "labels")

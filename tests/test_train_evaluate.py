"""Failure paths of train and evaluate; their working paths run in test_pipeline.py."""

from __future__ import annotations

import os

import pytest
from tests.conftest import conf_params, params_of

from qblock.core.errors import UserError
from qblock.stages import evaluate, train


def test_missing_pretrained_weights_say_where_to_put_them(tmp_path):
    with pytest.raises(UserError) as excinfo:
        train.model_source(params_of("model", weights=str(tmp_path / "weights" / "yolov8n.pt")))
    message = str(excinfo.value)
    assert "yolov8n.pt not found" in message and "dvc add" in message and "never downloads" in message


def test_from_scratch_uses_the_architecture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no weights/ here: neither COCO weights nor the base model
    assert train.model_source(params_of("model"))[0] == "yolov8n.yaml"
    scratch = ("yolov8n.yaml", "from scratch: model.weights is null")
    assert train.model_source(params_of("model", weights=None)) == scratch


def test_evaluate_without_a_model_is_a_clear_error(tmp_path, console, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no trained model; run the train stage"):
        evaluate.run(conf_params(), console)


def test_train_without_a_split_is_a_clear_error(tmp_path, console, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="manifest.json: cannot read"):
        train.run(conf_params(), console)
    assert not os.environ.get("YOLO_CONFIG_DIR", "").startswith(str(os.path.expanduser("~")))


def test_ultralytics_leaves_pillow_errors_alone(tmp_path):
    """After qblock prepares ultralytics, an unreadable image is still Pillow's clear error, not
    an attempt to pip-install a HEIF plugin (ultralytics patches PIL.Image.open globally)."""
    from PIL import Image, UnidentifiedImageError

    from qblock.model.yolo_env import prepare_ultralytics

    prepare_ultralytics(tmp_path)
    import ultralytics  # noqa: F401

    bogus = tmp_path / "not-an-image.png"
    bogus.write_bytes(b"hello")
    with pytest.raises(UnidentifiedImageError):
        Image.open(bogus)


def test_page_errors_count_misses_and_false_detections():
    from qblock.quality.worst_pages import page_errors

    truth = [(0, 0, 100, 100), (200, 200, 300, 300)]
    assert page_errors(truth, [(1, 1, 99, 101), (200, 200, 300, 300)]) == (0, 0)
    assert page_errors(truth, [(0, 0, 100, 100), (0, 0, 100, 100)]) == (1, 1)  # a double and a miss
    assert page_errors(truth, [(500, 500, 600, 600)]) == (2, 1)
    assert page_errors([], []) == (0, 0)

from __future__ import annotations

import shutil

import pytest
import yaml
from tests.conftest import REPO

from qblock.config import check_params_in_sync, compose_params, parse_params, write_params
from qblock.errors import UserError


@pytest.fixture
def project(tmp_path):
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    return tmp_path


PRESETS = [[], ["train=smoke"], ["train=desktop_4070"], ["model=yolov8s", "train.epochs=3"]]


@pytest.mark.parametrize("overrides", PRESETS)
def test_every_preset_composes_into_valid_params(project, overrides):
    params = parse_params(compose_params(project, overrides))
    assert params.train.epochs > 0 and params.model.architecture.endswith(".yaml")


def test_desktop_preset_is_the_original_plan(project):
    params = parse_params(compose_params(project, ["train=desktop_4070"]))
    assert (params.model.name, params.train.imgsz, params.train.batch, params.train.epochs) == ("yolov8m", 1024, 8, 100)
    assert params.train.device == "0" and params.train.amp


def test_unknown_key_and_wrong_type_name_the_key(project):
    data = compose_params(project)
    data["train"]["epoch"] = 5
    with pytest.raises(UserError, match="train.epoch"):
        parse_params(data)
    data = compose_params(project)
    data["train"]["epochs"] = "many"
    with pytest.raises(UserError, match="train.epochs"):
        parse_params(data)


def test_params_out_of_sync_with_conf_is_detected(project):
    write_params(project)
    assert check_params_in_sync(project) == []
    conf = project / "conf" / "train" / "cpu.yaml"
    conf.write_text(conf.read_text().replace("imgsz: 256", "imgsz: 320"))
    assert check_params_in_sync(project) == ["train.imgsz: conf/ says 320, params.yaml says 256"]


def test_hand_edit_of_params_is_detected(project):
    path = write_params(project)
    data = yaml.safe_load(path.read_text())
    data["export"]["max_overhang"] = 0.5
    path.write_text(yaml.safe_dump(data))
    assert check_params_in_sync(project) == ["export.max_overhang: conf/ says 0.02, params.yaml says 0.5"]


def test_bad_override_is_a_user_error(project):
    with pytest.raises(UserError, match="conf/"):
        compose_params(project, ["train=nonexistent"])

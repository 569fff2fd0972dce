from __future__ import annotations

import re
import shutil

import pytest
import yaml
from tests.conftest import REPO

from qblock.config.compose import check_params_in_sync, compose_params, write_params
from qblock.config.schema import parse_params
from qblock.core.errors import UserError


@pytest.fixture
def project(tmp_path):
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    return tmp_path


PRESETS = [[], ["train=smoke"], ["train=desktop_4070"], ["model=yolov8s", "train.epochs=3"]]


@pytest.mark.parametrize("overrides", PRESETS)
def test_every_preset_composes_into_valid_params(project, overrides):
    params = parse_params(compose_params(project, overrides))
    assert params.train.epochs > 0 and params.model.architecture.endswith(".yaml")


def test_desktop_preset_is_the_original_plan_with_measured_augmentation(project):
    params = parse_params(compose_params(project, ["train=desktop_4070"]))
    t = params.train
    assert (params.model.name, t.imgsz, t.epochs, t.device, t.amp) == ("yolov8m", 1024, 100, "0", True)
    assert params.model.weights == "auto"  # COCO-pretrained once `qblock weights fetch yolov8m` has run
    assert t.batch == -1  # AutoBatch: what fits a 12 GB card at 1024, not a fixed 8 that may not
    assert t.fliplr == t.flipud == t.hsv_h == t.hsv_s == 0  # pages are never mirrored and have no colour
    assert t.nbs <= 8  # one optimizer step per batch or two, not one per epoch


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
    imgsz = yaml.safe_load(conf.read_text())["imgsz"]
    conf.write_text(conf.read_text().replace(f"imgsz: {imgsz}", f"imgsz: {imgsz + 32}"))
    assert check_params_in_sync(project) == [f"train.imgsz: conf/ says {imgsz + 32}, params.yaml says {imgsz}"]


def test_hand_edit_of_params_is_detected(project):
    path = write_params(project)
    data = yaml.safe_load(path.read_text())
    data["export"]["max_overhang"] = 0.5
    path.write_text(yaml.safe_dump(data))
    assert check_params_in_sync(project) == ["export.max_overhang: conf/ says 0.02, params.yaml says 0.5"]


def test_bad_override_is_a_user_error(project):
    with pytest.raises(UserError, match="conf/"):
        compose_params(project, ["train=nonexistent"])


def _edit(path, old: str, new: str) -> None:
    """Replace the line matching ``old`` (a regular expression: presets' numbers change with measurements)."""
    text = path.read_text()
    assert re.search(old, text, re.MULTILINE), old
    path.write_text(re.sub(old, new, text, count=1, flags=re.MULTILINE))


@pytest.mark.parametrize(("file", "old", "new", "said"), [
    ("train/cpu.yaml", r"^epochs: \d+", "", "conf/train/cpu.yaml: bad value at `train.epochs`: missing"),
    ("train/cpu.yaml", "nbs: 8", "nbs: 8\nnbz: 8", "conf/train/cpu.yaml: bad value at `train.nbz`: unknown key"),
    ("config.yaml", "  duplicate_boxes: warn", "  duplicate_boxes: warm",
     "conf/config.yaml: `export.duplicate_boxes` is 'warm'; use one of warn, error"),
    ("config.yaml", "  champion_metric: mAP50-95", "  champion_metric: map",
     "conf/config.yaml: `evaluate.champion_metric` is 'map'; use one of mAP50, mAP50-95"),
    ("config.yaml", "  timeout_s: 10", "", "conf/config.yaml: bad value at `notify.timeout_s`: missing"),
    ("model/yolov8n.yaml", "weights: auto", "", "conf/model/yolov8n.yaml: bad value at `model.weights`: missing"),
])
def test_a_missing_misspelled_or_unknown_value_names_the_key_and_the_file(project, file, old, new, said):
    """No built-in defaults: what conf/ does not say is an error where it should be said."""
    _edit(project / "conf" / file, old, new)
    with pytest.raises(UserError) as caught:
        write_params(project)
    assert said in str(caught.value)
    assert not (project / "params.yaml").exists()


def test_a_key_missing_from_params_yaml_is_an_error_naming_it(project):
    from qblock.config.schema import load_params

    path = write_params(project)
    _edit(path, "  salt: qblock\n", "")
    with pytest.raises(UserError, match=r"params.yaml: bad value at `split.salt`: missing"):
        load_params(project)


def test_ultralytics_gets_every_train_field_but_qblocks_own(tmp_path):
    from dataclasses import fields

    from tests.conftest import conf_params

    from qblock.config.schema import TrainParams
    from qblock.model.yolo_env import prepare_ultralytics

    passed = conf_params().train.ultralytics_arguments()
    assert set(passed) == {f.name for f in fields(TrainParams)} - {"preset", "cpu_threads", "system_metrics", "ema_tau",
                                                                  "imgsz_max", "full_pages", "box_reach"}
    prepare_ultralytics(tmp_path)  # its settings in the test's folder, never the user's home
    from ultralytics.cfg import get_cfg

    assert set(passed) <= set(vars(get_cfg()))  # each is a real ultralytics argument


@pytest.mark.parametrize("mapping", ["{0: Question_Block, 1: Question_Block}",
                                     "{'0': Question_Block, '1': Question_Block}"], ids=["int keys", "quoted"])
def test_a_class_map_of_numeric_class_names_is_accepted(project, mapping):
    """Roboflow exports name classes '0', '1': the class_map an import suggests, pasted into conf/
    with or without quotes, composes and maps those names."""
    from pathlib import Path

    from qblock.imports.pages import Box, ImportedPage, check_classes

    _edit(project / "conf" / "config.yaml", r"^  class_map: \{\}", f"  class_map: {mapping}")
    params = parse_params(yaml.safe_load(write_params(project).read_text()))
    assert params.export.class_map == {"0": "Question_Block", "1": "Question_Block"}
    page = ImportedPage("export/labels/p1.txt", Path("p1.png"), "p1",
                        [Box(1, 2, 3, 4, "0"), Box(5, 6, 7, 8, "1")], (100, 100))
    check_classes([page], params.export)  # both names map: no error
    params.export.class_map = {}
    with pytest.raises(UserError, match="export.class_map: \\{'0': Question_Block, '1': Question_Block\\}"):
        check_classes([page], params.export)  # the suggestion is quoted, as pasted above

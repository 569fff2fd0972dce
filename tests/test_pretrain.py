"""The base model's recipe (pretrain/): its stages, its smoke run end to end, and the shipped file
being the one the committed recipe made."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image
from tests.conftest import REPO
from tests.repos import copy_repo, git_identity, sh

from qblock.core.code_closure import closure
from qblock.core.errors import UserError

PRETRAIN = REPO / "pretrain"
HILEX_SUBSET = REPO / "tests" / "data" / "hilex_subset"


def test_each_recipe_stage_depends_on_all_the_code_it_runs():
    stages = yaml.safe_load((PRETRAIN / "dvc.yaml").read_text())["stages"]
    runs = {"hilex": "qblock.pretrain.hilex", "pages": "qblock.pretrain.pages",
            **{stage: f"qblock.stages.{stage}" for stage in ("export", "split", "validate", "train", "evaluate")}}
    for stage, module in runs.items():
        deps = [(PRETRAIN / d).resolve() for d in stages[stage]["deps"] if d.startswith("../src/")]
        uncovered = sorted(str(p.relative_to(REPO)) for p in closure(module)
                           if not any(p == d or d in p.parents for d in deps) and p.name != "__init__.py")
        assert not uncovered, f"pretrain/dvc.yaml stage {stage} runs code it does not depend on: {uncovered}"


def test_the_committed_base_model_is_what_the_committed_recipe_made():
    """weights/qblock-base-yolov8n.pt has the MD5 pretrain/dvc.lock records for the recipe's model."""
    from qblock.pretrain.ship import locked_md5

    shipped = REPO / "weights" / "qblock-base-yolov8n.pt"
    md5 = hashlib.md5(shipped.read_bytes()).hexdigest()  # noqa: S324
    assert md5 == locked_md5(PRETRAIN / "dvc.lock", "models/best.pt")
    info = json.loads(shipped.with_suffix(".json").read_text())
    assert info["md5"] == md5 and info["hilex"]["commit"] in (PRETRAIN / "recipe.yaml").read_text()
    assert shipped.stat().st_size < 10_000_000  # a few MB, in git


def test_hilex_pages_get_their_portrait_shape_back_and_the_boxes_stay_right(tmp_path):
    from qblock.pretrain.hilex import restore_shape

    source = next((HILEX_SUBSET / "train" / "images").iterdir())
    restore_shape(source, tmp_path / source.name, 1.375)
    with Image.open(tmp_path / (source.stem + ".png")) as image:
        assert image.size == (640, 880)  # YOLO's boxes are shares of the page: the labels need no change


def test_a_paper_keeps_at_most_its_cap_by_a_stable_choice(tmp_path):
    from qblock.pretrain.pages import cap_documents

    def collection(root: Path) -> Path:
        for document, count in (("big paper", 7), ("small", 2)):
            for sub in ("pages", "groups"):
                (root / "documents" / document / sub).mkdir(parents=True)
            for i in range(count):
                (root / "documents" / document / "pages" / f"p{i}.png").write_bytes(b"x")
                (root / "documents" / document / "groups" / f"p{i}_groups.json").write_text("{}")
        return root

    first, second = collection(tmp_path / "a"), collection(tmp_path / "b")
    assert cap_documents(first, 3) == cap_documents(second, 3) == 4
    kept = sorted(p.name for p in (first / "documents" / "big paper" / "pages").iterdir())
    assert len(kept) == 3 and kept == sorted(p.name for p in (second / "documents" / "big paper" / "pages").iterdir())
    assert sorted(p.name for p in (first / "documents" / "big paper" / "groups").iterdir()) == \
        sorted(f"{Path(k).stem}_groups.json" for k in kept)
    assert len(list((first / "documents" / "small" / "pages").iterdir())) == 2


def hilex_repository(tmp_path: Path) -> tuple[Path, str]:
    """A git repository holding tests/data/hilex_subset as HiLEx holds its export: (path, commit)."""
    repository = tmp_path / "hilex-mirror"
    shutil.copytree(HILEX_SUBSET, repository / "HiLex_Yolo_Format")
    sh(["git", "init", "-q"], repository)
    git_identity(repository)
    sh(["git", "add", "-A"], repository)
    sh(["git", "commit", "-qm", "HiLEx subset"], repository)
    return repository, sh(["git", "rev-parse", "HEAD"], repository).stdout.strip()


def test_a_commit_the_source_lacks_is_a_clear_error(tmp_path, monkeypatch, console):
    from qblock.pretrain.hilex import SOURCE_ENV, get
    from qblock.pretrain.recipe import HilexParams

    repository, _ = hilex_repository(tmp_path)
    monkeypatch.setenv(SOURCE_ENV, str(repository))
    with pytest.raises(UserError, match="lacks the pinned commit"):
        get(HilexParams("https://example.invalid/HiLEx.git", "0" * 40, "HiLex_Yolo_Format", 1.375),
            tmp_path / "out", console)
    assert not (tmp_path / "out").exists()


def test_a_recipe_with_a_wrong_key_names_it(tmp_path):
    from qblock.pretrain.recipe import load_recipe

    text = (PRETRAIN / "recipe.yaml").read_text().replace("max_per_document:", "max_per_paper:")
    (tmp_path / "recipe.yaml").write_text(text)
    with pytest.raises(UserError, match="unknown key.*max_per_paper.*missing key.*max_per_document"):
        load_recipe(tmp_path)


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_on_a_few_pages_and_ships_what_dvc_lock_records(tmp_path):
    """`dvc repro` in pretrain/ (a HiLEx subset at a pinned commit, two demo workbooks, one tiny epoch),
    then `qblock pretrain ship`: the main project's weights/ gets the model dvc.lock records."""
    repository, commit = hilex_repository(tmp_path)
    repo = copy_repo(tmp_path / "repo")
    pretrain = repo / "pretrain"
    for stale in ("dvc.lock", "params.yaml"):
        (pretrain / stale).unlink(missing_ok=True)
    recipe = yaml.safe_load((pretrain / "recipe.yaml").read_text())
    recipe["hilex"]["commit"] = commit
    recipe["pages"].update(demo_documents=2, demo_pages=1, demo_labelers=2)
    (pretrain / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    preset = pretrain / "conf" / "train" / "pretrain_cpu.yaml"
    smoke = yaml.safe_load((repo / "conf" / "train" / "smoke.yaml").read_text())
    preset.write_text(yaml.safe_dump(yaml.safe_load(preset.read_text()) | {
        k: smoke[k] for k in ("epochs", "imgsz", "batch", "nbs", "close_mosaic", "plots", "system_metrics")}))
    for shipped in (repo / "weights").glob("qblock-base-*"):
        shipped.unlink()
    sh([sys.executable, "-m", "qblock", "params"], pretrain)
    run = sh(["dvc", "repro"], pretrain, env={"QBLOCK_HILEX_SOURCE": str(repository)})
    said = run.stdout + run.stderr
    assert "6 pages in data/hilex" in said and "dropped" in said and "2 demo pages in 2 workbooks" in said
    documents = sorted(p.name for p in (pretrain / "data" / "dataset_root" / "documents").iterdir())
    assert [d for d in documents if not d.startswith("demo-")] == \
        ["GATE_CS2023", "Kaplan-GMAT-Practice-Questions", "sat-practice-test-9"]
    assert len(documents) == 5 and (pretrain / "data" / "split" / "test.txt").read_text().strip()
    assert json.loads((pretrain / "metrics.json").read_text())["test_pages"] > 0
    sh([sys.executable, "-m", "qblock", "pretrain", "ship"], pretrain)
    base = repo / "weights" / "qblock-base-yolov8n.pt"
    from qblock.pretrain.ship import locked_md5

    md5 = hashlib.md5(base.read_bytes()).hexdigest()  # noqa: S324
    assert md5 == locked_md5(pretrain / "dvc.lock", "models/best.pt")
    assert json.loads(base.with_suffix(".json").read_text())["hilex"]["commit"] == commit
    main_status = sh(["dvc", "status", "--json"], repo).stdout  # the main pipeline never runs the recipe
    assert "pretrain" not in main_status

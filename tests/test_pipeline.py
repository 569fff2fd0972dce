"""End to end: the real `dvc repro` in a temporary copy of this repository, smoke preset.

One pipeline run is shared by the tests in this module (training is the slow part); each
test reads it without changing it, except the last ones, which say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import REPO, webhook_receiver

pytestmark = pytest.mark.slow


def sh(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # mlflow.set_tracking_uri() in this process sets it
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def git_identity(repo: Path) -> None:
    """A committer for this repository only (the tests commit, and so does `dvc exp run`)."""
    sh(["git", "config", "user.name", "qblock test"], repo)
    sh(["git", "config", "user.email", "test@qblock.invalid"], repo)


def copy_repo(target: Path) -> Path:
    """The project's tracked and new files (no data, no outputs), as a fresh git repo."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for stale in ("dvc.lock", "metrics.json"):
        (target / stale).unlink(missing_ok=True)
    sh(["git", "init", "-q"], target)
    git_identity(target)
    sh(["git", "add", "-A"], target)
    sh(["git", "commit", "-qm", "copy"], target)
    return target


def mlflow_runs(repo: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{(repo / 'mlflow.db').as_posix()}")
    return mlflow.search_runs(experiment_names=["qblock"], output_format="list")


@pytest.fixture(scope="module")
def module_webhook():
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, module_webhook) -> dict:
    webhook = module_webhook
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    sh([sys.executable, "-m", "qblock", "demo-data", "data/dataset_root", "--documents", "3", "--pages", "2"], repo)
    config = repo / "conf" / "config.yaml"  # smoke becomes this copy's default preset; a local webhook
    config.write_text(config.read_text().replace("  - train: cpu", "  - train: smoke")
                      .replace("  webhook_url: null", f"  webhook_url: {webhook[0]}"))
    sh([sys.executable, "-m", "qblock", "params"], repo)
    sh(["git", "commit", "-qam", "smoke"], repo)
    first = sh(["dvc", "repro"], repo)
    return {"repo": repo, "first": first.stdout + first.stderr}


def test_repro_runs_every_stage_and_writes_metrics(pipeline):
    repo, log = pipeline["repo"], pipeline["first"]
    for stage in ("export", "split", "validate", "train", "evaluate"):
        assert f"Running stage '{stage}'" in log
    metrics = json.loads((repo / "metrics.json").read_text())
    assert set(metrics) >= {"mAP50", "mAP50-95", "precision", "recall"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("mAP50", "mAP50-95", "precision", "recall"))
    assert (repo / "models" / "best.pt").stat().st_size > 1_000_000
    curve = (repo / "plots" / "pr_curve.csv").read_text().splitlines()
    assert curve[0] == "recall,precision" and len(curve) > 50
    assert not list((repo / "data" / "yolo").glob("*.cache")), "ultralytics' label cache must not linger"
    # With predictions kept, ultralytics also tries faster-coco-eval (not installed): no lines about it
    assert json.loads((repo / "runs" / "evaluate" / "predictions.json").read_text())
    assert "faster-coco-eval" not in log


def test_evaluate_map_agrees_with_pycocotools_on_its_own_predictions(pipeline):
    from PIL import Image
    from tests.coco import coco_map
    from tests.test_coco_crosscheck import TOLERANCE

    from qblock.data.labels import parse_clean

    repo = pipeline["repo"]
    yolo = repo / "data" / "yolo"
    images, truth = {}, {}
    for entry in (repo / "data" / "split" / "val.txt").read_text().split():
        image = yolo / entry
        with Image.open(image) as page:
            images[image.name] = page.size
        rows = parse_clean((yolo / "labels" / f"{image.stem}.txt").read_text())
        truth[image.name] = [row.to_pixels(*page.size) for row in rows]
    predictions = json.loads((repo / "runs" / "evaluate" / "predictions.json").read_text())
    assert predictions and {p["file_name"] for p in predictions} <= set(images)
    coco50, coco = coco_map(images, truth, predictions)
    metrics = json.loads((repo / "metrics.json").read_text())
    assert metrics["mAP50"] == pytest.approx(coco50, abs=TOLERANCE)
    assert metrics["mAP50-95"] == pytest.approx(coco, abs=TOLERANCE)


def test_worst_val_pages_are_drawn_and_logged(pipeline):
    import mlflow

    repo = pipeline["repo"]
    errors = json.loads((repo / "runs" / "evaluate" / "val_page_errors.json").read_text())
    assert len(errors) == 2 and all(e["questions"] > 0 for e in errors)
    assert (repo / "runs" / "evaluate" / "worst_val_pages.png").stat().st_size > 10_000
    (run,) = mlflow_runs(repo)
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluate")}
    assert {"evaluate/worst_val_pages.png", "evaluate/confusion_matrix.png", "evaluate/BoxPR_curve.png"} <= logged


def test_the_webhook_heard_that_the_run_finished(pipeline, module_webhook):
    finished = [body for body in module_webhook[1] if body["status"] == "finished"]
    assert len(finished) == 1
    assert finished[0]["metrics"] == json.loads((pipeline["repo"] / "metrics.json").read_text())
    assert "question-block-detector v1, the new champion" in finished[0]["text"]


def test_mlflow_holds_one_run_with_params_epochs_metrics_and_model(pipeline):
    import mlflow

    runs = mlflow_runs(pipeline["repo"])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.name"] == "yolov8n"
    assert run.data.tags["qblock.preset"] == "smoke" and len(run.data.tags["git.commit"]) == 40
    client = mlflow.MlflowClient()
    history = client.get_metric_history(run.info.run_id, "val/mAP50")
    assert [m.step for m in history] == [1, 2]
    metrics = json.loads((pipeline["repo"] / "metrics.json").read_text())
    assert run.data.metrics["mAP50"] == pytest.approx(metrics["mAP50"])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/best.pt"]
    tags = run.data.tags
    assert tags["hydra.overrides"] == "none" and tags["qblock.device"].startswith("cpu (")
    assert tags["versions.ultralytics"][0].isdigit() and tags["versions.torch"].startswith("2.")
    assert len(tags["qblock.dataset_hash"]) == 16 and len(tags["qblock.val_hash"]) == 16
    assert tags["champion.decision"] == "promoted" and tags["champion.reason"] == "no champion yet"
    champion = client.get_model_version_by_alias("question-block-detector", "champion")
    assert champion.run_id == run.info.run_id and str(champion.version) == "1"


def test_second_repro_does_nothing(pipeline):
    log = sh(["dvc", "repro"], pipeline["repo"])
    assert "Running stage" not in log.stdout
    assert "Data and pipelines are up to date" in log.stdout
    assert len(mlflow_runs(pipeline["repo"])) == 1


def test_dvc_shows_metrics_and_plots(pipeline):
    shown = sh(["dvc", "metrics", "show", "--json"], pipeline["repo"]).stdout
    assert "mAP50" in shown and "boxes_per_page_mean" in shown
    sh(["dvc", "plots", "show", "-o", "dvc_plots"], pipeline["repo"])
    assert (pipeline["repo"] / "dvc_plots" / "index.html").is_file()


def test_changing_epochs_reruns_only_train_and_evaluate(pipeline):
    """Changes the shared repo: a second MLflow run appears."""
    repo = pipeline["repo"]
    log = sh(["dvc", "exp", "run", "-S", "train.epochs=1"], repo)
    text = log.stdout + log.stderr
    ran = {line.split("'")[1] for line in text.splitlines() if line.startswith("Running stage")}
    assert ran <= {"check_params", "train", "evaluate"} and {"train", "evaluate"} <= ran
    shown = sh(["dvc", "exp", "show", "--json"], repo).stdout  # experiments with params and metrics
    assert '"train.epochs"' in shown or '"epochs"' in shown
    assert '"mAP50-95"' in shown
    runs = mlflow_runs(repo)
    assert len(runs) == 2
    assert {r.data.params["train.epochs"] for r in runs} == {"1", "2"}
    assert {r.data.tags["hydra.overrides"] for r in runs} == {"none", "train.epochs=1"}


def test_each_run_registers_a_version_and_the_better_one_is_champion(pipeline):
    """Reads the two runs the previous test left: both registered, the alias on the better one."""
    import mlflow
    import pandas as pd

    runs = sorted(mlflow_runs(pipeline["repo"]), key=lambda r: r.info.start_time)
    assert len(runs) == 2
    client = mlflow.MlflowClient()
    versions = sorted(client.search_model_versions("name='question-block-detector'"), key=lambda v: int(v.version))
    assert [v.run_id for v in versions] == [r.info.run_id for r in runs]
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "val/mAP50")) == int(run.data.params["train.epochs"])
        assert {"mAP50", "mAP50-95", "train/box_loss"} <= set(run.data.metrics)
    scores = [r.data.metrics["mAP50-95"] for r in runs]
    better = 1 if scores[1] > scores[0] else 0  # a tie keeps the first champion
    champion = client.get_model_version_by_alias("question-block-detector", "champion")
    assert champion.run_id == runs[better].info.run_id
    second = versions[1].tags
    assert second["champion.decision"] == ("promoted" if better else "not promoted")
    assert "on the same val data" in second["champion.reason"]

    model = mlflow.pyfunc.load_model("models:/question-block-detector@champion")
    page = sorted((pipeline["repo"] / "data" / "yolo" / "images").iterdir())[0]
    boxes = model.predict(pd.DataFrame({"image": [str(page)]}), params={"conf": 0.001})
    assert list(boxes.columns) == ["image", "class", "confidence", "x", "y", "width", "height"]
    assert len(boxes) > 0 and (boxes["width"] > 0).all() and set(boxes["class"]) == {"Question_Block"}


def test_exp_run_switches_the_preset_through_hydra(pipeline):
    """`-S train=cpu` selects another file of the conf/train group (shrunk here to stay quick)."""
    repo = pipeline["repo"]
    sh(["dvc", "exp", "run", "-S", "train=cpu", "-S", "train.epochs=1", "-S", "train.imgsz=128"], repo)
    params = (repo / "params.yaml").read_text()
    assert "preset: cpu" in params and "epochs: 1" in params
    presets = {r.data.tags["qblock.preset"] for r in mlflow_runs(repo)}
    assert "cpu" in presets


def test_a_queued_experiment_runs_in_a_copy_and_records_into_the_same_store(pipeline):
    """`dvc exp run --queue` runs in a temporary copy of the repo: the pages must be tracked to be
    there, and MLflow must still be the project's store. Tracks the shared repo's pages (as
    `qblock publish` would) and commits."""
    repo = pipeline["repo"]
    before = len(mlflow_runs(repo))
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "before queueing"], repo)
    sh(["dvc", "exp", "run", "--queue", "-S", "train.epochs=1"], repo)
    untracked = sh(["dvc", "exp", "run", "--run-all"], repo)
    said = " ".join((untracked.stdout + untracked.stderr).split())
    assert "This is a queued experiment" in said and "dvc add data/dataset_root" in said
    assert len(mlflow_runs(repo)) == before

    sh(["dvc", "add", "data/dataset_root"], repo)
    sh(["git", "add", "data/dataset_root.dvc"], repo)
    sh(["git", "commit", "-qm", "Track the labeled pages"], repo)
    sh(["dvc", "exp", "run", "--queue", "-S", "train.epochs=1", "--name", "queued-one"], repo)
    sh(["dvc", "exp", "run", "--run-all"], repo)
    runs = mlflow_runs(repo)
    assert len(runs) == before + 1
    queued = max(runs, key=lambda r: r.info.start_time)
    assert queued.data.tags["dvc.exp_name"] == "queued-one" and queued.info.status == "FINISHED"
    assert queued.data.params["train.epochs"] == "1" and "mAP50" in queued.data.metrics
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], repo).stdout)
    assert "queued-one" in json.dumps(shown)


def test_metrics_diff_shows_what_adding_a_document_changed(pipeline):
    """Changes the shared repo's data: a copy of one workbook under a new name that hashes into val."""
    from qblock.stages.split import document_score

    repo = pipeline["repo"]
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "trained", "--allow-empty"], repo)
    documents = repo / "data" / "dataset_root" / "documents"
    names = (f"added workbook {i}" for i in range(1000))
    added = next(name for name in names if 0.05 < document_score(name, "qblock") < 0.2)  # val: below 0.25
    shutil.copytree(next(documents.iterdir()), documents / added)
    log = sh(["dvc", "repro", "validate"], repo).stdout
    assert "Running stage 'export'" in log and "(4 files written, the rest unchanged)" in log
    diff = json.loads(sh(["dvc", "metrics", "diff", "--json"], repo).stdout)
    stats = diff["reports/data_stats.json"]
    assert stats["pages"]["old"] == 6 and stats["pages"]["new"] == 8
    assert stats["documents"]["diff"] == 1
    assert json.loads((repo / "data" / "split" / "split.json").read_text())["documents"][added] == "val"


def test_new_val_data_measures_the_champion_again_before_comparing(pipeline):
    """Continues from the previous test (a document added to val): the full pipeline reruns and
    evaluate downloads the champion's weights from MLflow and measures them on today's val pages."""
    import mlflow

    repo = pipeline["repo"]
    log = sh(["dvc", "repro"], repo).stdout
    assert "the champion was measured on other val data; measuring it again" in log
    client = mlflow.MlflowClient(f"sqlite:///{(repo / 'mlflow.db').as_posix()}")
    newest = max(client.search_model_versions("name='question-block-detector'"), key=lambda v: int(v.version))
    assert "re-measured on today's val data" in newest.tags["champion.reason"]
    assert newest.tags["champion.decision"] in ("promoted", "not promoted")


def test_repro_stops_when_params_no_longer_match_conf(pipeline):
    """Changes the shared repo's conf/ (last test of the module)."""
    repo = pipeline["repo"]
    smoke = repo / "conf" / "train" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("imgsz: 128", "imgsz: 160"))
    result = sh(["dvc", "repro"], repo, check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "train.imgsz: conf/ says 160, params.yaml says 128" in out
    assert "Run `qblock params`" in out
    assert "Running stage 'train'" not in out

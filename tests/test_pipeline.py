"""End to end: the real `dvc repro` in a temporary copy of this repository, smoke preset.

One trained repo is shared by the whole session (`trained_repo`, conftest): tests that only read
it use it as it is; a test that changes it works on its own fork. So any one test runs alone
(`pytest -k NAME`), in any order.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from tests.repos import fork, mlflow_runs, sh

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(trained_repo, tmp_path_factory) -> dict:
    """A fork of the trained repo with a second run: `dvc exp run -S train.epochs=1`."""
    repo = fork(trained_repo["repo"], tmp_path_factory.mktemp("two-runs") / "repo")
    log = sh(["dvc", "exp", "run", "-S", "train.epochs=1"], repo)
    return {"repo": repo, "log": log.stdout + log.stderr}


def add_val_workbook(repo: Path) -> str:
    """A copy of one workbook under a new name that hashes into val."""
    from qblock.stages.split import document_score

    documents = repo / "data" / "dataset_root" / "documents"
    names = (f"added workbook {i}" for i in range(1000))
    added = next(name for name in names if 0.05 < document_score(name, "qblock") < 0.2)  # val: below 0.25
    shutil.copytree(next(documents.iterdir()), documents / added)
    from PIL import Image

    for page in (documents / added / "pages").glob("*.png"):  # a rescan, not the same file: validate stops a
        with Image.open(page) as image:                       # byte-identical page in train and val
            rescanned = image.convert("RGB")
        rescanned.putpixel((0, 0), (250, 250, 250))
        rescanned.save(page)
    return added


def test_repro_runs_every_stage_and_writes_metrics(trained_repo):
    repo, log = trained_repo["repo"], trained_repo["first"]
    for stage in ("export", "split", "validate", "train", "evaluate"):
        assert f"Running stage '{stage}'" in log
    assert "train: starting from weights/qblock-base-yolov8n.pt (qblock's base model" in log  # weights: auto, one line
    metrics = json.loads((repo / "metrics.json").read_text())
    assert set(metrics) >= {"mAP50", "mAP50-95", "precision", "recall"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("mAP50", "mAP50-95", "precision", "recall"))
    assert (repo / "models" / "best.pt").stat().st_size > 1_000_000
    assert (repo / "runs" / "train" / "results.csv").is_file()  # the epoch table, without the smoke preset's
    assert not list((repo / "runs" / "train").glob("*.png"))     # training pictures (train.plots: false)
    curve = (repo / "plots" / "pr_curve.csv").read_text().splitlines()
    assert curve[0] == "recall,precision" and len(curve) > 50
    assert not list((repo / "data" / "yolo").glob("*.cache")), "ultralytics' label cache must not linger"
    # With predictions kept, ultralytics also tries faster-coco-eval (not installed): no lines about it
    assert json.loads((repo / "runs" / "evaluate" / "predictions.json").read_text())
    assert "faster-coco-eval" not in log


def test_evaluate_map_agrees_with_pycocotools_on_its_own_predictions(trained_repo):
    from PIL import Image
    from tests.coco import coco_map
    from tests.test_coco_crosscheck import TOLERANCE

    from qblock.data.labels import parse_clean

    repo = trained_repo["repo"]
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


def test_worst_val_pages_are_drawn_and_logged(trained_repo):
    import mlflow

    repo = trained_repo["repo"]
    errors = json.loads((repo / "runs" / "evaluate" / "val_page_errors.json").read_text())
    assert len(errors) == 2 and all(e["questions"] > 0 for e in errors)
    assert (repo / "runs" / "evaluate" / "worst_val_pages.png").stat().st_size > 10_000
    (run,) = mlflow_runs(repo)
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluate")}
    assert {"evaluate/worst_val_pages.png", "evaluate/confusion_matrix.png", "evaluate/BoxPR_curve.png"} <= logged


def test_the_webhook_heard_that_the_run_finished(trained_repo, session_webhook):
    finished = [body for body in session_webhook[1] if body["status"] == "finished"]
    assert len(finished) == 1
    assert finished[0]["metrics"] == json.loads((trained_repo["repo"] / "metrics.json").read_text())
    assert "question-block-detector v1, the new champion" in finished[0]["text"]


def test_mlflow_holds_one_run_with_params_epochs_metrics_and_model(trained_repo):
    import mlflow

    runs = mlflow_runs(trained_repo["repo"])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.name"] == "yolov8n"
    assert run.data.tags["qblock.preset"] == "smoke" and len(run.data.tags["git.commit"]) == 40
    client = mlflow.MlflowClient()
    history = client.get_metric_history(run.info.run_id, "epoch/val_mAP50")
    assert [m.step for m in history] == [1, 2]
    metrics = json.loads((trained_repo["repo"] / "metrics.json").read_text())
    assert run.data.metrics["mAP50"] == pytest.approx(metrics["mAP50"])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/best.pt"]
    tags = run.data.tags
    assert tags["hydra.overrides"] == "none" and tags["qblock.device"].startswith("cpu (")
    assert re.fullmatch(r"(AdamW|SGD), lr [0-9.e-]+(, momentum [0-9.]+)?", tags["qblock.optimizer"])  # what it took
    assert tags["versions.ultralytics"][0].isdigit() and tags["versions.torch"].startswith("2.")
    assert len(tags["qblock.dataset_hash"]) == 16 and len(tags["qblock.val_hash"]) == 16
    assert tags["champion.decision"] == "promoted" and tags["champion.reason"] == "no champion yet"
    champion = client.get_model_version_by_alias("question-block-detector", "champion")
    assert champion.run_id == run.info.run_id and str(champion.version) == "1"


def test_second_repro_does_nothing(trained_repo):
    log = sh(["dvc", "repro"], trained_repo["repo"])
    assert "Running stage" not in log.stdout
    assert "Data and pipelines are up to date" in log.stdout
    assert len(mlflow_runs(trained_repo["repo"])) == 1


def test_dvc_shows_metrics_and_plots(trained_repo):
    shown = sh(["dvc", "metrics", "show", "--json"], trained_repo["repo"]).stdout
    assert "mAP50" in shown and "boxes_per_page_mean" in shown
    sh(["dvc", "plots", "show", "-o", "dvc_plots"], trained_repo["repo"])
    assert (trained_repo["repo"] / "dvc_plots" / "index.html").is_file()


def test_changing_epochs_reruns_only_train_and_evaluate(two_runs):
    repo, text = two_runs["repo"], two_runs["log"]
    ran = {line.split("'")[1] for line in text.splitlines() if line.startswith("Running stage")}
    assert ran <= {"check_params", "train", "evaluate"} and {"train", "evaluate"} <= ran
    shown = sh(["dvc", "exp", "show", "--json"], repo).stdout  # experiments with params and metrics
    assert '"train.epochs"' in shown or '"epochs"' in shown
    assert '"mAP50-95"' in shown
    runs = mlflow_runs(repo)
    assert len(runs) == 2
    assert {r.data.params["train.epochs"] for r in runs} == {"1", "2"}
    assert {r.data.tags["hydra.overrides"] for r in runs} == {"none", "train.epochs=1"}


def test_each_run_registers_a_version_and_the_better_one_is_champion(two_runs):
    """Both runs registered, the alias on the better one."""
    import mlflow
    import pandas as pd

    runs = sorted(mlflow_runs(two_runs["repo"]), key=lambda r: r.info.start_time)
    assert len(runs) == 2
    client = mlflow.MlflowClient()
    versions = sorted(client.search_model_versions("name='question-block-detector'"), key=lambda v: int(v.version))
    assert [v.run_id for v in versions] == [r.info.run_id for r in runs]
    for run in runs:
        epochs = int(run.data.params["train.epochs"])
        assert len(client.get_metric_history(run.info.run_id, "epoch/val_mAP50")) == epochs
        assert {"mAP50", "mAP50-95", "epoch/train_box_loss"} <= set(run.data.metrics)
        assert not any(k.startswith(("val/", "train/", "lr/")) for k in run.data.metrics)  # per epoch says so
    scores = [r.data.metrics["mAP50-95"] for r in runs]
    better = 1 if scores[1] > scores[0] else 0  # a tie keeps the first champion
    champion = client.get_model_version_by_alias("question-block-detector", "champion")
    assert champion.run_id == runs[better].info.run_id
    second = versions[1].tags
    assert second["champion.decision"] == ("promoted" if better else "not promoted")
    assert "on the same val data" in second["champion.reason"]
    status = " ".join(sh([sys.executable, "-m", "qblock", "status", "--offline"], two_runs["repo"]).stdout.split())
    said = f"model: registered as question-block-detector v{versions[1].version}, " + \
        ("the champion" if better else f"a challenger; the champion is v{versions[0].version}")
    assert said in status, status  # the workspace's model is the second run's

    model = mlflow.pyfunc.load_model("models:/question-block-detector@champion")
    page = sorted((two_runs["repo"] / "data" / "yolo" / "images").iterdir())[0]
    boxes = model.predict(pd.DataFrame({"image": [str(page)]}), params={"conf": 0.001})
    assert list(boxes.columns) == ["image", "class", "confidence", "x", "y", "width", "height"]
    assert len(boxes) > 0 and (boxes["width"] > 0).all() and set(boxes["class"]) == {"Question_Block"}


def test_exp_run_switches_the_preset_through_hydra(trained_repo, tmp_path):
    """`-S train=cpu` selects another file of the conf/train group (shrunk here to stay quick). Its few
    training pages (fewer than train.full_pages) are seen larger, up to train.imgsz_max, and the size
    trained at is in the checkpoint and in MLflow."""
    repo = fork(trained_repo["repo"], tmp_path / "repo")
    done = sh(["dvc", "exp", "run", "-S", "train=cpu", "-S", "train.epochs=1", "-S", "train.imgsz=128",
               "-S", "train.imgsz_max=160"], repo)
    params = (repo / "params.yaml").read_text()
    assert "preset: cpu" in params and "epochs: 1" in params
    runs = {r.data.tags["qblock.preset"]: r for r in mlflow_runs(repo)}
    assert "cpu" in runs
    said = " ".join(done.stdout.split())
    assert "training pages, seen at 160 px: train.imgsz 128 is for 64 pages or more" in said, said
    assert runs["cpu"].data.params["train.imgsz"] == "128"
    assert runs["cpu"].data.params["train.imgsz_trained"] == "160"
    from qblock.model.image_size import imgsz_of

    assert imgsz_of(repo / "models" / "best.pt", 0) == 160  # what evaluate, the registry and propose read
    pictures = {p.name for p in (repo / "runs" / "train").iterdir()}  # the cpu preset draws them (train.plots)
    assert {"results.png", "labels.jpg", "train_batch0.jpg"} <= pictures, pictures


def test_a_queued_experiment_runs_in_a_copy_and_records_into_the_same_store(trained_repo, tmp_path):
    """`dvc exp run --queue` runs in a temporary copy of the repo: the pages must be tracked to be
    there, and MLflow must still be the project's store. Tracks the pages (as `qblock publish`
    would) and commits."""
    repo = fork(trained_repo["repo"], tmp_path / "repo")
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


def test_metrics_diff_shows_what_adding_a_document_changed(trained_repo, tmp_path):
    repo = fork(trained_repo["repo"], tmp_path / "repo")
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "trained", "--allow-empty"], repo)
    added = add_val_workbook(repo)
    log = sh(["dvc", "repro", "validate"], repo).stdout
    assert "Running stage 'export'" in log and "(4 files written, the rest unchanged)" in log
    diff = json.loads(sh(["dvc", "metrics", "diff", "--json"], repo).stdout)
    stats = diff["reports/data_stats.json"]
    assert stats["pages"]["old"] == 6 and stats["pages"]["new"] == 8
    assert stats["documents"]["diff"] == 1
    assert json.loads((repo / "data" / "split" / "split.json").read_text())["documents"][added] == "val"


def test_new_val_data_measures_the_champion_again_before_comparing(trained_repo, tmp_path):
    """A document added to val: the full pipeline reruns and evaluate downloads the champion's
    weights from MLflow and measures them on today's val pages."""
    import mlflow

    repo = fork(trained_repo["repo"], tmp_path / "repo")
    add_val_workbook(repo)
    log = sh(["dvc", "repro"], repo).stdout
    assert "the champion was measured on other val data; measuring it again" in log
    client = mlflow.MlflowClient(f"sqlite:///{(repo / 'mlflow.db').as_posix()}")
    newest = max(client.search_model_versions("name='question-block-detector'"), key=lambda v: int(v.version))
    assert "re-measured on today's val data" in newest.tags["champion.reason"]
    assert newest.tags["champion.decision"] in ("promoted", "not promoted")


def test_repro_stops_when_params_no_longer_match_conf(trained_repo, tmp_path):
    repo = fork(trained_repo["repo"], tmp_path / "repo")
    smoke = repo / "conf" / "train" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("imgsz: 128", "imgsz: 160"))
    result = sh(["dvc", "repro"], repo, check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "train.imgsz: conf/ says 160, params.yaml says 128" in out
    assert "Run `qblock params`" in out
    assert "Running stage 'train'" not in out


def test_crop_rate_agrees_with_an_independent_count_on_the_same_predictions(trained_repo):
    """evaluate's crop rate at its chosen threshold, counted again here: a true box is cropped
    well when some prediction at or above the threshold overlaps it at IoU >= 0.9 (boxes of
    different questions never overlap that much, so this needs no one-to-one bookkeeping)."""
    import numpy as np
    from PIL import Image

    from qblock.data.labels import parse_clean

    repo = trained_repo["repo"]
    metrics = json.loads((repo / "metrics.json").read_text())
    assert {"crop_rate", "crop_rate_unsnapped", "false_crops_per_page", "conf_threshold"} <= set(metrics)
    snapping = json.loads((repo / "runs" / "evaluate" / "ink_snap.json").read_text())
    if snapping["kept"]:  # the model's own boxes: the figures without snapping
        metrics = snapping["unsnapped"]
    else:
        assert metrics["crop_rate_unsnapped"] == metrics["crop_rate"]
    threshold = metrics["conf_threshold"]
    predictions = json.loads((repo / "runs" / "evaluate" / "predictions.json").read_text())
    yolo = repo / "data" / "yolo"
    good = questions = crops = 0
    for entry in (repo / "data" / "split" / "val.txt").read_text().split():
        image = yolo / entry
        with Image.open(image) as page:
            width, height = page.size
        truth = np.array([row.to_pixels(width, height) for row in
                          parse_clean((yolo / "labels" / f"{image.stem}.txt").read_text())]).reshape(-1, 4)
        mine = np.array([[x, y, x + w, y + h] for p in predictions if p["file_name"] == image.name
                         and p["score"] >= threshold for x, y, w, h in [p["bbox"]]]).reshape(-1, 4)
        crops += len(mine)
        questions += len(truth)
        if len(mine) and len(truth):
            lo = np.maximum(truth[:, None, :2], mine[None, :, :2])
            hi = np.minimum(truth[:, None, 2:], mine[None, :, 2:])
            inter = np.clip(hi - lo, 0, None).prod(-1)
            area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
            ious = inter / (area(truth)[:, None] + area(mine)[None, :] - inter)
            good += int((ious >= 0.9).any(axis=1).sum())
    assert metrics["crop_rate"] == pytest.approx(good / questions, abs=1e-4)
    pages = len((repo / "data" / "split" / "val.txt").read_text().split())
    assert metrics["false_crops_per_page"] == pytest.approx((crops - good) / pages, abs=1e-3)


def test_runs_read_at_a_glance_in_mlflow(two_runs):
    """Names people can sort, a one-line description, the data as MLflow datasets, the verdict on the
    registered version, and no system-metrics charts for a smoke run."""

    import mlflow

    runs = sorted(mlflow_runs(two_runs["repo"]), key=lambda r: r.info.start_time)
    first, second = runs
    assert re.fullmatch(r"[0-9a-f]{7}(\+dirty)?-smoke-yolov8n", first.info.run_name), first.info.run_name
    assert second.info.run_name == f"{second.data.tags['dvc.exp_name']}-smoke-yolov8n"
    client = mlflow.MlflowClient()
    versions = {v.run_id: v for v in client.search_model_versions("name='question-block-detector'")}
    for run in runs:
        note = run.data.tags["mlflow.note.content"]
        assert f"mAP50 {run.data.metrics['mAP50']:.3f}" in note and ("champion" in note or "challenger" in note)
        inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i
                  for i in run.inputs.dataset_inputs}
        assert inputs["training"].dataset.digest == run.data.tags["qblock.dataset_hash"]
        assert inputs["validation"].dataset.digest == run.data.tags["qblock.val_hash"]
        for dataset_input in inputs.values():
            tags = {t.key: t.value for t in dataset_input.tags}
            assert int(tags["pages"]) > 0 and int(tags["boxes"]) > 0
            assert '"commit"' in dataset_input.dataset.source
        version = versions[run.info.run_id]
        assert version.description == note
        assert float(version.tags["metric.mAP50-95"]) == pytest.approx(run.data.metrics["mAP50-95"], abs=1e-4)
        assert not any(key.startswith("system/") for key in run.data.metrics)  # off in the smoke preset


def test_show_puts_the_latest_run_beside_the_champion_and_the_previous_one(two_runs):
    shown = sh([sys.executable, "-m", "qblock", "show"], two_runs["repo"]).stdout
    said = " ".join(shown.split())
    runs = sorted(mlflow_runs(two_runs["repo"]), key=lambda r: r.info.start_time)
    assert "change" in said and "mAP50-95" in said
    assert f"previous: run {runs[0].info.run_name}" in said  # the run before the latest, by name
    assert f"{runs[0].data.metrics['mAP50-95']:.4f}" in said  # and its figure


def test_a_collection_too_small_for_a_test_split_says_so(trained_repo):
    repo, log = trained_repo["repo"], " ".join(trained_repo["first"].split())
    notes = json.loads((repo / "data" / "split" / "split.json").read_text())["notes"]
    assert any("3 document(s) are too few for a test split" in note for note in notes)
    assert "no test split (split.test_fraction, 5 documents or more): these are val's figures" in log
    assert not any(key.startswith("test_") for key in json.loads((repo / "metrics.json").read_text()))


def test_the_headline_is_a_test_split_of_whole_documents_that_no_choice_reads(trained_repo, tmp_path):
    """Six workbooks: one is held out as test. metrics.json, MLflow and `qblock show` lead with its figures,
    measured at val's threshold; emptying its labels changes its figures and nothing that val chose."""
    import mlflow

    repo = fork(trained_repo["repo"], tmp_path / "repo")
    more = tmp_path / "more"
    sh([sys.executable, "-m", "qblock", "demo-data", str(more), "--documents", "6", "--pages", "2", "--seed", "5"],
       repo)
    documents = repo / "data" / "dataset_root" / "documents"
    for document in sorted((more / "documents").iterdir()):
        if not (documents / document.name).exists():
            shutil.copytree(document, documents / document.name)
    sh(["dvc", "repro"], repo)

    split_file = json.loads((repo / "data" / "split" / "split.json").read_text())
    assert split_file["counts"]["test"] == {"documents": 1, "pages": 2}
    test_pages = (repo / "data" / "split" / "test.txt").read_text().split()
    train_pages = set((repo / "data" / "split" / "train.txt").read_text().split())
    assert len(test_pages) == 2 and not train_pages & set(test_pages)
    metrics = json.loads((repo / "metrics.json").read_text())
    assert list(metrics)[:7] == ["test_crop_rate", "test_mAP50", "test_mAP50-95", "test_false_crops_per_page",
                                 "test_precision", "test_recall", "test_pages"]
    assert metrics["test_pages"] == 2
    assert metrics["test_documents"] == 1  # one workbook: its crop rate is the worst and the best
    assert metrics["test_crop_rate_worst_document"] == metrics["test_crop_rate_best_document"] == \
        pytest.approx(metrics["test_crop_rate"])
    by_document = json.loads((repo / "runs" / "evaluate" / "test" / "crop_rate_by_document.json").read_text())
    assert list(by_document) == [d for d, side in split_file["documents"].items() if side == "test"]

    mlflow.set_tracking_uri(f"sqlite:///{(repo / 'mlflow.db').as_posix()}")
    run = max(mlflow_runs(repo), key=lambda r: r.info.start_time)
    assert run.data.metrics["test_crop_rate"] == pytest.approx(metrics["test_crop_rate"])
    assert "on 2 test pages (val: " in run.data.tags["mlflow.note.content"]
    contexts = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset.name
                for i in run.inputs.dataset_inputs}
    assert contexts == {"training": "train pages", "validation": "val pages", "testing": "test pages"}
    shown = " ".join(sh([sys.executable, "-m", "qblock", "show"], repo).stdout.split())
    assert re.search(rf"test_crop_rate\W+{metrics['test_crop_rate']:.4f}", shown) and "nothing was chosen on" in shown
    assert "test_crop_rate_worst_document" in shown

    for entry in test_pages:  # the test pages' labels gone: only the test figures may move
        (repo / "data" / "yolo" / "labels" / f"{Path(entry).stem}.txt").write_text("")
    evaluated = " ".join(sh([sys.executable, "-m", "qblock", "evaluate"], repo).stdout.split())
    again = json.loads((repo / "metrics.json").read_text())
    assert "test crop rate of each workbook: 0.00 to 0.00 (1 workbook, in runs/evaluate/test/crop_rate_by_document." \
           "json)" in evaluated
    assert {k: v for k, v in again.items() if not k.startswith("test_")} == \
        {k: v for k, v in metrics.items() if not k.startswith("test_")}
    assert again["test_crop_rate"] == 0 and again["test_mAP50"] == 0

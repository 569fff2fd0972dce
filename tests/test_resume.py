"""A training killed mid-run continues on the next `dvc repro` (real dvc, real ultralytics)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.repos import copy_repo, mlflow_runs, sh

pytestmark = pytest.mark.slow
EPOCHS = 8


def epochs_in(results: Path) -> int:
    return max(0, len(results.read_text().strip().splitlines()) - 1) if results.is_file() else 0


def test_killed_training_resumes_instead_of_restarting(tmp_path):
    repo = copy_repo(tmp_path)
    sh([sys.executable, "-m", "qblock", "demo-data", "data/dataset_root", "--documents", "3", "--pages", "2"], repo)
    config = repo / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - train: cpu", "  - train: smoke"))
    smoke = repo / "conf" / "train" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("epochs: 2", f"epochs: {EPOCHS}"))
    sh([sys.executable, "-m", "qblock", "params"], repo)
    sh(["git", "commit", "-qam", "longer smoke"], repo)

    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    first = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    killed_after = 0
    while time.monotonic() < deadline and first.poll() is None:
        done = [epochs_in(p) for p in (repo / ".qblock" / "checkpoints").glob("*/results.csv")]
        if done and done[0] >= 2 and list((repo / ".qblock" / "checkpoints").glob("*/weights/last.pt")):
            os.killpg(first.pid, signal.SIGKILL)  # the power goes: no cleanup of any kind
            first.wait()
            killed_after = done[0]
            break
        time.sleep(0.1)
    assert 2 <= killed_after < EPOCHS, "training was not caught mid-run"
    assert not (repo / "models" / "best.pt").exists()

    second = sh(["dvc", "repro"], repo)
    log = second.stdout + second.stderr
    assert "train: resuming the interrupted training from epoch" in log
    results = (repo / "runs" / "train" / "results.csv").read_text().strip().splitlines()
    assert len(results) == EPOCHS + 1  # one table, every epoch once
    assert not list((repo / ".qblock" / "checkpoints").iterdir()), "a finished training leaves no checkpoint"

    import mlflow

    (run,) = mlflow_runs(repo)  # the same run, continued
    assert run.info.status == "FINISHED"
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "val/mAP50")]
    assert sorted(set(steps)) == list(range(1, EPOCHS + 1))

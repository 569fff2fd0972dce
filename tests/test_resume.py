"""A training killed mid-run continues on the next `dvc repro` (real dvc, real ultralytics)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.repos import copy_repo, mlflow_runs, sh

pytestmark = pytest.mark.slow
EPOCHS = 8


def epochs_in(results: Path) -> int:
    return max(0, len(results.read_text().strip().splitlines()) - 1) if results.is_file() else 0


# Loaded by every Python process of the first `dvc repro` (PYTHONPATH): the third time a `last.pt`
# checkpoint is written, half of it reaches the disk and then the power goes.
POWER_CUT = """
import os, pathlib, signal

_write_bytes = pathlib.Path.write_bytes
_writes = [0]


def write_bytes(self, data):
    if self.name.startswith("last.pt"):
        _writes[0] += 1
        if _writes[0] == 3:
            with open(self, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            os.killpg(os.getpgid(0), signal.SIGKILL)
    return _write_bytes(self, data)


pathlib.Path.write_bytes = write_bytes
"""


def cut_training(tmp_path: Path) -> Path:
    """A repo whose `dvc repro` lost power while writing the third epoch's checkpoint."""
    repo = copy_repo(tmp_path)
    sh([sys.executable, "-m", "qblock", "demo-data", "data/dataset_root", "--documents", "3", "--pages", "2"], repo)
    config = repo / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - train: cpu", "  - train: smoke"))
    smoke = repo / "conf" / "train" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("epochs: 2", f"epochs: {EPOCHS}"))
    sh([sys.executable, "-m", "qblock", "params"], repo)
    sh(["git", "commit", "-qam", "longer smoke"], repo)

    power_cut = tmp_path / "power_cut"
    power_cut.mkdir()
    (power_cut / "sitecustomize.py").write_text(POWER_CUT)
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(power_cut), os.environ.get("PYTHONPATH")]))}
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    first = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=600,
                           start_new_session=True)
    assert first.returncode == -signal.SIGKILL, f"the power cut did not come:\n{first.stdout}\n{first.stderr}"
    (results,) = (repo / ".qblock" / "checkpoints").glob("*/results.csv")
    assert epochs_in(results) == 3, "cut while the third epoch's checkpoint was being written"
    assert not (repo / "models" / "best.pt").exists()
    return repo


def test_killed_training_resumes_instead_of_restarting(tmp_path):
    repo = cut_training(tmp_path)
    second = sh(["dvc", "repro"], repo)
    log = second.stdout + second.stderr
    assert f"train: resuming the interrupted training from epoch 3 of {EPOCHS}" in log  # the last whole checkpoint
    results = (repo / "runs" / "train" / "results.csv").read_text().strip().splitlines()
    assert len(results) == EPOCHS + 1  # one table, every epoch once
    assert not list((repo / ".qblock" / "checkpoints").iterdir()), "a finished training leaves no checkpoint"

    import mlflow

    (run,) = mlflow_runs(repo)  # the same run, continued
    assert run.info.status == "FINISHED"
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "epoch/val_mAP50")]
    assert sorted(set(steps)) == list(range(1, EPOCHS + 1))


def test_a_checkpoint_that_cannot_be_read_starts_the_training_over_and_fails_its_run(tmp_path):
    repo = cut_training(tmp_path)
    (last,) = (repo / ".qblock" / "checkpoints").glob("*/weights/last.pt")
    last.write_bytes(last.read_bytes()[:1000])  # as a version before whole-file saves left it, or a bad disk

    second = sh(["dvc", "repro"], repo)
    log = second.stdout + second.stderr
    assert "cannot be resumed from (cut off while it was written, or damaged): starting the training over" in log
    assert "Traceback" not in log
    results = (repo / "runs" / "train" / "results.csv").read_text().strip().splitlines()
    assert len(results) == EPOCHS + 1

    runs = {run.info.status for run in mlflow_runs(repo)}
    assert runs == {"FAILED", "FINISHED"}  # the cut run is not left RUNNING in the UI


def test_epochs_done_reads_only_a_whole_resumable_checkpoint(tmp_path):
    import torch

    from qblock.model.checkpoints import epochs_done

    whole = tmp_path / "last.pt"
    torch.save({"epoch": 4, "optimizer": {"state": {}}, "ema": None}, whole)
    assert epochs_done(whole) == 5
    stripped = tmp_path / "stripped.pt"
    torch.save({"epoch": -1, "optimizer": None}, stripped)  # a finished training's weights
    assert epochs_done(stripped) is None
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert epochs_done(cut) is None
    assert epochs_done(tmp_path / "missing.pt") is None

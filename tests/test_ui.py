"""`qblock ui` serves a real MLflow store; headless Chromium sees the runs and their mAP."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO, conf_params, params_of

from qblock.config.compose import compose_params

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browse(url: str, screenshot: Path | None = None) -> str:
    """The page's text once its scripts ran (or a screenshot of it)."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000",
            "--virtual-time-budget=30000", f"--user-data-dir={screenshot.parent if screenshot else '/tmp'}/chromium"]
    args += [f"--screenshot={screenshot}", url] if screenshot else ["--dump-dom", url]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", result.stdout, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (`make test` installs it with apt-get)")
def test_ui_shows_the_runs_and_their_map(tmp_path):
    import mlflow

    from qblock.model import mlflow_store, run_log

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_params(REPO)))
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["DVC_ROOT"] = str(tmp_path)  # the store of this project, as the stages see it
    try:
        experiment = mlflow_store.connect(params_of("mlflow"))
        run_ids = {}
        for preset, map50, crop in (("smoke", 0.6123, 0.5432), ("cpu", 0.9876, 0.8123)):  # as train opens them
            params = conf_params(f"train={preset}")
            run_id = run_log.start_run(params, "0123456789abcdef")
            run_log.log_dataset("training", "0123456789abcdef", 64, 512, {"export_dir": "data/yolo"})
            mlflow.log_metrics({"mAP50": map50, "mAP50-95": map50 - 0.3, "test_crop_rate": crop})
            mlflow.end_run()
            run_ids[run_log.run_name(params, run_log.git_state())] = run_id
    finally:
        os.environ.pop("DVC_ROOT")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert all(name.endswith(("-smoke-yolov8n", "-cpu-yolov8n")) for name in run_ids)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    server = subprocess.Popen([sys.executable, "-m", "qblock", "ui", "--port", str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base, timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "the MLflow server did not answer within 120 s"
                time.sleep(1)

        said = ""
        while "MLflow UI on" not in said and server.poll() is None:  # the address it prints: qblock's view
            said = server.stdout.readline().decode()
        assert f"MLflow UI on {base}/#/experiments/{experiment}/runs?viewStateShareKey=qblock" in said, said
        runs_page = said.split(" on ", 1)[1].split()[0]
        text = browse(runs_page)
        assert all(name in text for name in run_ids) and "2 matching runs" in text
        assert "train pages" in text  # the Dataset column: the data each run trained on
        # the figures people compare are columns without picking them: the test crop rate first
        assert "test_crop_rate" in text and "0.8123" in text and "0.5432" in text and "Description" in text
        tags = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment(experiment).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view, not GenAI
        quoted = ",".join(f"%22{i}%22" for i in run_ids.values())
        compare_page = f"{base}/#/compare-runs?runs=[{quoted}]&experiments=[%22{experiment}%22]"
        compare = browse(compare_page)
        assert "mAP50" in compare and "mAP50-95" in compare
        assert "0.9876" in compare and "0.6123" in compare

        shots = Path(tempfile.gettempdir()) / "qblock-ui-screenshots"  # kept: passing tests' tmp_path is removed
        shots.mkdir(exist_ok=True)
        for name, url in (("runs", runs_page), ("compare", compare_page)):
            shot = shots / f"mlflow-ui-{name}.png"
            browse(url, shot)
            assert shot.stat().st_size > 20_000, f"{shot} looks empty"
        print(f"screenshots: {shots}/mlflow-ui-*.png")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_the_ui_answers_the_names_other_machines_use_and_refuses_others(tmp_path):
    """`qblock ui --host 0.0.0.0` for the laptop: MLflow's DNS-rebinding guard must let in this
    machine's name and a name given with --allowed-host (http://desktop:5000), and still refuse others."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_params(REPO)))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    server = subprocess.Popen([sys.executable, "-m", "qblock", "ui", "--host", "127.0.0.1", "--port", str(port),
                               "--allowed-host", "desktop"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    api = "/api/2.0/mlflow/experiments/search?max_results=1"

    def status(host: str) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(base + api, headers={"Host": host}), timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as refused:
            return refused.code

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "the MLflow server did not answer within 120 s"
                time.sleep(1)
        assert status(f"{socket.gethostname()}:{port}") == 200
        assert status(f"desktop:{port}") == 200
        assert status("192.168.1.20") == 200  # the desktop's address on the LAN
        assert status(f"100.101.102.103:{port}") == 200 and status("desktop.tail1234.ts.net") == 200  # Tailscale
        assert status(f"[fe80::1c2b:3aff:fe4d:5e6f]:{port}") == 200  # IPv6 link-local
        assert status("attacker.example") == 403
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    said = server.stdout.read().decode(errors="replace")
    assert "experiments/search" not in said, said[-2000:]  # no line per request: the console stays readable

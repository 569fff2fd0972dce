"""The done-notification against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket
import time

import yaml
from tests.conftest import REPO, params_of
from tests.test_cli import qblock

from qblock.config.compose import compose_params
from qblock.core import notify


def test_finished_run_posts_a_summary(webhook, console):
    url, received = webhook
    metrics = {"mAP50": 0.95, "mAP50-95": 0.71, "val_pages": 12}
    assert notify.run_finished(params_of("notify", webhook_url=url), metrics, "question-block-detector v3", console)
    body = received[0]
    assert body["path"] == "/hook" and body["content_type"] == "application/json"
    assert body["status"] == "finished" and body["metrics"] == metrics
    assert body["text"].startswith("qblock: run finished: mAP50 0.950, mAP50-95 0.710 on 12 val pages")
    tested = {"test_crop_rate": 0.8, "test_pages": 8} | metrics
    assert notify.run_finished(params_of("notify", webhook_url=url), tested, "question-block-detector v3", console)
    assert received[-1]["text"].startswith("qblock: run finished: crop_rate 0.800 on 8 test pages "
                                           "(val: mAP50 0.950, mAP50-95 0.710); question-block-detector v3")


def test_off_by_default(console):
    assert notify.run_finished(params_of("notify"), {"mAP50": 0.5}, "v1", console) is False
    assert console.text == ""


def test_a_failing_stage_posts_why_and_still_fails(webhook, tmp_path):
    url, received = webhook
    params = compose_params(REPO, [f"notify.webhook_url={url}"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = qblock("train", cwd=tmp_path)  # no exported data here
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    body = received[0]
    assert body["status"] == "failed" and body["stage"] == "train"
    assert "manifest.json" in body["text"]


def test_an_unreachable_webhook_is_a_warning_within_the_timeout(console):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    params = params_of("notify", webhook_url=f"http://127.0.0.1:{port}/", timeout_s=2)
    sent = notify.stage_failed(params, "train", "x", console)
    assert sent is False and time.monotonic() - start < 5
    assert "could not reach the webhook at http://127.0.0.1:" in console.text

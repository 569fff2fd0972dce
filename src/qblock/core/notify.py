"""The done-notification: a short JSON summary POSTed to this machine's webhook when a pipeline
run ends (after evaluate) or a stage fails. The URL carries a token, so it comes from
$QBLOCK_NOTIFY_WEBHOOK_URL or `.qblock/machine.yaml`, never from conf/ (see ``core.secrets``);
`notify.webhook_url` in conf/ is only for a URL with no secret in it. Off when none is set.

The body has a `text` line for chat webhooks (Slack, Mattermost, Discord's /slack endpoint,
Telegram's sendMessage?chat_id=...) and the details as fields. A webhook that cannot be reached
is a warning: the pipeline's result never depends on it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Protocol

from rich.console import Console

from qblock.core import secrets

# Set by `qblock watch` for the round it runs: the stages' messages go to this file (JSON lines), and the
# watcher sends one message for the whole round (what was trained, pushed, and the stages' words).
COLLECT_ENV = "QBLOCK_NOTIFY_COLLECT"


class WebhookSettings(Protocol):
    """What sending needs of the notify section (config/schema.py's NotifyParams has it): core reads
    no config module."""

    webhook_url: str | None
    timeout_s: float


def send(params: WebhookSettings, payload: dict, console: Console) -> bool:
    """POST ``payload`` to the webhook, if one is set on this machine; True when it was accepted."""
    if collect := os.environ.get(COLLECT_ENV):
        with open(collect, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return True
    url = secrets.webhook_url(params.webhook_url)
    if not url:
        return False
    payload = {"source": "qblock", "experiment": os.environ.get("DVC_EXP_NAME")} | payload
    body = secrets.redact(json.dumps(payload, ensure_ascii=False))  # an error text may quote a URL
    request = urllib.request.Request(url, data=body.encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "qblock"})
    try:
        with urllib.request.urlopen(request, timeout=params.timeout_s) as response:
            response.read()
        return True
    except (urllib.error.URLError, OSError, ValueError) as exc:
        console.print(f"[yellow]warning[/]: notify: could not reach the webhook at {secrets.redact(url)} "
                      f"({secrets.redact(str(exc))}); "
                      "the run itself is unaffected")
        return False


def run_finished(params: WebhookSettings, metrics: dict, model: str, console: Console) -> bool:
    def shown(prefix: str) -> str:
        return ", ".join(f"{k.removeprefix(prefix)} {v:.3f}" for k, v in metrics.items()
                         if isinstance(v, float) and k.startswith("test_") == (prefix == "test_"))

    text = f"qblock: run finished: {shown('')} on {metrics.get('val_pages', '?')} val pages; {model}"
    if "test_pages" in metrics:
        text = (f"qblock: run finished: {shown('test_')} on {metrics['test_pages']} test pages "
                f"(val: {shown('')}); {model}")
    return send(params, {"status": "finished", "text": text, "metrics": metrics, "model": model}, console)


def stage_failed(params: WebhookSettings, stage: str, error: str, console: Console) -> bool:
    text = f"qblock: stage {stage} failed: {error.splitlines()[0] if error else 'no message'}"
    return send(params, {"status": "failed", "stage": stage, "text": text, "error": error}, console)

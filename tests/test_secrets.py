"""Secrets never land in git, on the NAS or in the MLflow UI: the webhook's token comes from this
machine's environment, a token written into conf/ stops the pipeline, doctor finds one planted in
a tracked file, and the UI asks for a password when told to."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from tests.conftest import FAKE_BOT_TOKEN, REPO
from tests.repos import copy_repo, fork, mlflow_runs, sh
from tests.test_ui import free_port

from qblock.core import secrets

TOKEN_URL = f"https://api.telegram.org/bot{FAKE_BOT_TOKEN}/sendMessage?chat_id=42"
SECRET_PART = FAKE_BOT_TOKEN.split(":")[1]
# Made-up secrets are put together at run time: written out whole, they would be what `qblock doctor`
# rightly finds in the files git tracks (and every clone of qblock carries this file).
SLACK_URL = "https://hooks.slack.com/" + "services/T0AAAA/B0BBBB/cccccccccccccccccccc"
DATABASE_URI = "postgresql://mlflow:" + "pa55-word@desktop:5432/mlflow"
QUERY_URL = "https://example.org/hook?token=" + "abcdef123456&room=3"


@pytest.mark.parametrize(("url", "kind", "shown"), [
    (TOKEN_URL, "a Telegram bot token", "https://api.telegram.org/bot123456789:***/sendMessage?chat_id=42"),
    (SLACK_URL, "a Slack webhook", "https://hooks.slack.com/services/***"),
    (DATABASE_URI, "a password in a URL", "postgresql://mlflow:***@desktop:5432/mlflow"),
    (QUERY_URL, "a token in a URL", "https://example.org/hook?token=***&room=3"),
    ("postgresql://mlflow:***@desktop:5432/mlflow", None, "postgresql://mlflow:***@desktop:5432/mlflow"),
    ("postgresql://mlflow:<password>@desktop/mlflow", None, "postgresql://mlflow:<password>@desktop/mlflow"),
    ("http://nas.local:8080/qblock-hook", None, "http://nas.local:8080/qblock-hook"),
    ("ssh://me@nas/volume1/qblock", None, "ssh://me@nas/volume1/qblock"),
    ("sqlite:///D:/qblock/mlflow.db", None, "sqlite:///D:/qblock/mlflow.db"),
])
def test_a_secret_in_a_url_is_spotted_and_printed_without_it(url, kind, shown):
    assert secrets.kind_of(url) == kind
    assert secrets.redact(url) == shown
    assert secrets.redact(f"could not reach {url}: refused") == f"could not reach {shown}: refused"


def test_this_machines_webhook_comes_from_the_environment_then_the_machine_file(tmp_path, monkeypatch):
    monkeypatch.delenv(secrets.WEBHOOK_ENV, raising=False)
    assert secrets.webhook_url(None, tmp_path) is None
    assert secrets.webhook_url("http://nas.local/hook", tmp_path) == "http://nas.local/hook"
    (tmp_path / ".qblock").mkdir()
    (tmp_path / ".qblock" / "machine.yaml").write_text(f"notify_webhook_url: {TOKEN_URL}\n")
    assert secrets.webhook_url("http://nas.local/hook", tmp_path) == TOKEN_URL
    monkeypatch.setenv(secrets.WEBHOOK_ENV, "http://127.0.0.1:9/from-env")
    assert secrets.webhook_url(None, tmp_path) == "http://127.0.0.1:9/from-env"


def qblock(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = sh([sys.executable, "-m", "qblock", *args], cwd, check=False, env=env)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_a_token_written_into_conf_stops_qblock_params_and_dvc_repro(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    before = (repo / "params.yaml").read_bytes()
    config = repo / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  webhook_url: null", f"  webhook_url: {TOKEN_URL}"))

    refused = qblock("params", cwd=repo)
    said = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 1
    assert "conf/config.yaml: `notify.webhook_url` holds a Telegram bot token" in said
    assert secrets.WEBHOOK_ENV in said and ".qblock/machine.yaml" in said and "rotate" in said
    assert SECRET_PART not in said
    assert (repo / "params.yaml").read_bytes() == before  # nothing written

    # params.yaml with the token, as `dvc exp run -S notify.webhook_url=...` would compose it
    data = yaml.safe_load(before)
    data["notify"]["webhook_url"] = TOKEN_URL
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    stopped = sh(["dvc", "repro"], repo, check=False)
    output = " ".join((stopped.stdout + stopped.stderr).split())
    assert stopped.returncode != 0
    assert "params.yaml: `notify.webhook_url` holds a Telegram bot token" in output
    assert SECRET_PART not in output
    assert not (repo / "data" / "yolo").exists()  # stopped at the first stage


@pytest.mark.slow
def test_doctor_names_a_token_planted_in_a_tracked_file(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    (repo / "scripts").mkdir()
    (repo / "scripts" / "tell_me.sh").write_text(f"#!/bin/sh\n# ping the phone\ncurl -X POST '{TOKEN_URL}'\n")
    sh(["git", "add", "scripts/tell_me.sh"], repo)
    result = qblock("doctor", cwd=repo)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1
    assert "problem secrets:" in said and "scripts/tell_me.sh line 3: a Telegram bot token" in said
    assert secrets.WEBHOOK_ENV in said and "rotate" in said
    assert SECRET_PART not in said


def files_holding(folder: Path, text: str) -> list[str]:
    needle = text.encode()
    return [str(path.relative_to(folder)) for path in sorted(folder.rglob("*"))
            if path.is_file() and needle in path.read_bytes()]


@pytest.mark.slow
def test_the_webhooks_token_is_nowhere_the_project_shares(trained_repo, session_webhook, tmp_path):
    """The session's pipeline ran with a Telegram-style URL in the environment; then this machine
    publishes to a folder NAS and a bare git origin, and commits and pushes the model as the desktop."""
    url, received = session_webhook
    assert FAKE_BOT_TOKEN in url
    assert any(body["path"].startswith(f"/bot{FAKE_BOT_TOKEN}/") for body in received)  # the token did its job

    repo = fork(trained_repo["repo"], tmp_path / "repo")
    bare, nas = tmp_path / "origin.git", tmp_path / "nas" / "qblock-store"
    nas.parent.mkdir()
    sh(["git", "init", "-q", "--bare", str(bare)], tmp_path)
    sh(["git", "remote", "add", "origin", str(bare)], repo)
    sh(["git", "push", "-q", "-u", "origin", "HEAD"], repo)
    env = {secrets.WEBHOOK_ENV: url}
    assert qblock("remote", "set", str(nas), cwd=repo).returncode == 0
    published = qblock("publish", cwd=repo, env=env)
    assert published.returncode == 0, published.stdout + published.stderr
    trained = qblock("desktop-run", cwd=repo, env=env)
    assert trained.returncode == 0, trained.stdout + trained.stderr

    history = sh(["git", "log", "-p", "--all"], bare).stdout + sh(["git", "log", "-p", "--all"], repo).stdout
    assert "dvc.lock" in history and "params.yaml" in history  # the history really holds them
    assert SECRET_PART not in history
    assert SECRET_PART not in (repo / "params.yaml").read_text() + (repo / "dvc.lock").read_text()
    assert any(nas.rglob("*")) and files_holding(nas, SECRET_PART) == []
    assert files_holding(repo / "mlartifacts", SECRET_PART) == []
    assert SECRET_PART.encode() not in (repo / "mlflow.db").read_bytes()
    for run in mlflow_runs(repo):  # all MLflow says of the webhook: its host
        assert not any(key.startswith("notify.") for key in run.data.params)  # not a training parameter
        assert run.data.tags["qblock.webhook_host"] == "127.0.0.1"
    assert files_holding(repo, SECRET_PART) == []  # the whole working copy, outputs and caches included
    assert "problem secrets" not in qblock("doctor", cwd=repo).stdout  # and doctor agrees


def get(url: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_the_ui_with_auth_asks_for_the_password_from_the_environment(tmp_path):
    from qblock.config.compose import compose_params

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_params(REPO)))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT",
                                                            secrets.UI_PASSWORD_ENV)}
    refused = subprocess.run([sys.executable, "-m", "qblock", "ui", "--auth"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and secrets.UI_PASSWORD_ENV in refused.stdout
    assert "no default password" in " ".join(refused.stdout.split()).lower()
    assert "Traceback" not in refused.stdout + refused.stderr

    port = free_port()
    password = "correct horse battery staple"
    server = subprocess.Popen([sys.executable, "-m", "qblock", "ui", "--auth", "--port", str(port)], cwd=tmp_path,
                              env=env | {secrets.UI_PASSWORD_ENV: password}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status = get(api)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                assert time.monotonic() < deadline, "the MLflow server did not answer within 120 s"
                time.sleep(1)
        assert status == 401
        assert get(api, "admin", "wrong password") == 401
        assert get(api, "admin", password) == 200
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    config = (tmp_path / ".qblock" / "ui_auth.ini").read_text()
    assert password not in config  # the password is handed to MLflow through its environment only


@pytest.mark.slow
def test_the_ui_served_beyond_this_machine_without_auth_warns(tmp_path):
    from qblock.config.compose import compose_params

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(compose_params(REPO)))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    server = subprocess.Popen([sys.executable, "-m", "qblock", "ui", "--host", "127.0.0.2", "--port", str(free_port())],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        lines = []
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)
            if "warning" in line or len(lines) > 40:
                break
        said = " ".join(" ".join(lines).split())
        assert "warning: no password" in said and "qblock ui --auth" in said
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_the_ui_auth_key_and_users_file_are_readable_by_this_user_only(tmp_path, monkeypatch):
    """The form-signing key and the users' password hashes: 0600, when created and when found wider."""
    from qblock.services.ui_auth import auth_environment

    monkeypatch.setenv("QBLOCK_UI_PASSWORD", "a long enough one")
    auth_environment(tmp_path)
    folder = tmp_path / ".qblock"
    for name in ("ui_auth.key", "ui_auth.db"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name
        (folder / name).chmod(0o644)  # as an earlier qblock left them
    key = (folder / "ui_auth.key").read_text()
    auth_environment(tmp_path)
    for name in ("ui_auth.key", "ui_auth.db"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    assert (folder / "ui_auth.key").read_text() == key  # the same key: logged-in forms stay valid


def test_doctor_finds_a_token_in_an_earlier_commit_and_credentials_in_dvcs_config(tmp_path):
    """A token committed, then deleted (HEAD is clean, the origin keeps it), and an S3 key written to
    the committed .dvc/config by a `dvc remote modify` without --local: each named, with its own fix."""
    repo = copy_repo(tmp_path / "repo")
    script = repo / "tell_me.sh"
    script.write_text(f"curl -X POST '{TOKEN_URL}'\n")
    sh(["git", "add", "tell_me.sh"], repo)
    sh(["git", "commit", "-qm", "ping"], repo)
    sh(["git", "rm", "-q", "tell_me.sh"], repo)
    sh(["git", "commit", "-qm", "oops"], repo)
    sh(["dvc", "remote", "add", "s3nas", "s3://bucket/qblock"], repo)
    sh(["dvc", "remote", "modify", "s3nas", "secret_access_key", "wJalrXUtnFEMI" + "K7MDENGbPxRfiCYEXAMPLEKEY"], repo)
    sh(["git", "add", ".dvc/config"], repo)
    sh(["git", "commit", "-qm", "remote"], repo)
    result = qblock("doctor", cwd=repo)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1
    assert "tell_me.sh: a Telegram bot token (removed since, still in the history)" in said
    assert ".dvc/config line" in said and "a credential of DVC's remote (secret_access_key)" in said
    assert "dvc remote modify --local" in said and "git filter-repo" in said
    assert SECRET_PART not in said and "K7MDENG" not in said

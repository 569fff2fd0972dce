"""`qblock weights fetch`: downloaded once from a release (served here on loopback), checked against
the release's SHA-256, tracked by DVC; offline, the error says where to put the file. And
`weights: auto`: pretrained when the file is there, from scratch when not."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.repos import sh

WEIGHTS = os.urandom(300_000)  # stands in for a .pt file: only its bytes and hash matter here


def serve(digest: str | None):
    """A release description and its asset on 127.0.0.1; returns (server, release URL, requests seen)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            port = self.server.server_address[1]
            if self.path == "/release.json":
                asset = {"name": "yolov8m.pt", "size": len(WEIGHTS),
                         "browser_download_url": f"http://127.0.0.1:{port}/download/yolov8m.pt", "digest": digest}
                body = json.dumps({"tag_name": "v8.4.0", "assets": [asset, {"name": "yolov8n.pt"}]}).encode()
            elif self.path == "/download/yolov8m.pt":
                body = WEIGHTS
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/release.json", seen


def fetch(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qblock", "weights", "fetch", *args], cwd=repo,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def repo(tmp_path) -> Path:
    sh(["git", "init", "-q"], tmp_path)
    sh([sys.executable, "-m", "dvc", "init", "-q"], tmp_path)
    return tmp_path


def test_fetch_checks_the_sha256_puts_the_file_in_weights_and_dvc_adds_it_once(repo):
    server, release, seen = serve("sha256:" + hashlib.sha256(WEIGHTS).hexdigest())
    try:
        result = fetch(repo, "yolov8m", "--release", release)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (repo / "weights" / "yolov8m.pt").read_bytes() == WEIGHTS
        assert "checked" in result.stdout
        tracked = (repo / "weights" / "yolov8m.pt.dvc").read_text()
        assert hashlib.md5(WEIGHTS).hexdigest() in tracked
        assert "/yolov8m.pt" in (repo / "weights" / ".gitignore").read_text()
        assert not list((repo / "weights").glob("*.part"))

        again = fetch(repo, "yolov8m", "--release", release)
        assert again.returncode == 0 and "already here" in again.stdout
        assert seen.count("/download/yolov8m.pt") == 1
    finally:
        server.shutdown()


def test_a_download_whose_sha256_differs_from_the_release_is_thrown_away(repo):
    server, release, _ = serve("sha256:" + "0" * 64)
    try:
        result = fetch(repo, "yolov8m", "--release", release)
    finally:
        server.shutdown()
    assert result.returncode == 1
    assert "SHA-256" in result.stdout and "nothing was written" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (repo / "weights").exists() or not any((repo / "weights").iterdir())


def test_a_release_without_a_published_digest_is_refused(repo):
    server, release, seen = serve(None)
    try:
        result = fetch(repo, "yolov8m", "--release", release)
    finally:
        server.shutdown()
    assert result.returncode == 1 and "publishes no SHA-256" in result.stdout
    assert "/download/yolov8m.pt" not in seen


def test_an_unknown_name_lists_what_the_release_has(repo):
    server, release, _ = serve("sha256:" + "0" * 64)
    try:
        result = fetch(repo, "yolov9zz", "--release", release)
    finally:
        server.shutdown()
    assert result.returncode == 1 and "yolov9zz.pt is not in the release" in result.stdout
    assert "yolov8m, yolov8n" in result.stdout


def test_offline_the_error_says_where_to_put_the_file(repo):
    server, release, _ = serve(None)
    server.shutdown()
    server.server_close()  # nothing listens there now
    result = fetch(repo, "yolov8m", "--release", release)
    assert result.returncode == 1
    assert str(Path("weights") / "yolov8m.pt") in result.stdout and "dvc add" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_weights_auto_starts_from_coco_then_the_base_model_then_scratch(tmp_path, monkeypatch):
    """`auto`: COCO weights when fetched, else qblock's base model, else from scratch; each said in one line."""
    from qblock.config.schema import ModelParams
    from qblock.stages.train import model_source

    monkeypatch.chdir(tmp_path)
    auto = ModelParams(name="yolov8m", architecture="yolov8m.yaml", weights="auto")
    source, why = model_source(auto)
    assert source == "yolov8m.yaml" and "from scratch" in why and "weights/qblock-base-yolov8m.pt" in why
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "qblock-base-yolov8m.pt").write_bytes(b"base")
    source, why = model_source(auto)
    assert source == str(Path("weights") / "qblock-base-yolov8m.pt") and "base model" in why
    (tmp_path / "weights" / "yolov8m.pt").write_bytes(b"pretrained")
    source, why = model_source(auto)
    assert source == str(Path("weights") / "yolov8m.pt") and "COCO" in why
    assert model_source(ModelParams(name="yolov8m", architecture="yolov8m.yaml", weights=None))[0] == "yolov8m.yaml"
    assert "\n" not in "".join(model_source(auto))

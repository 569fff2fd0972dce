"""Shared helpers: tiny app-style datasets built in tmp_path, a console that records output."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]

# Tests never reach the network: ultralytics must not try, and neither must DVC's usage report (each `dvc`
# call in a repo a test makes with `dvc init` would try to send one, and leave its report file in the temp dir).
os.environ["YOLO_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"
os.environ.pop("MLFLOW_TRACKING_URI", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs `-n auto --dist loadgroup`), a fixture shared by many tests is
    built once, not once per worker: every test of the trained repo runs on one worker, and so do the tests
    of a module with a module-scoped fixture (a typeset collection, a tiny dataset). The rest spread freely.

    Slow tests go first (xdist hands out the groups with most tests first, then the rest in this order): the
    suite is CPU-bound on 2 cores, and a minutes-long test handed out last leaves one worker idle meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: otherwise as collected
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if "trained_repo" in info.names_closure:
            group = "trained_repo"
        elif any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs):
            group = item.module.__name__ if item.module else item.nodeid
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def own_export_stats():
    """Export keeps this machine's file stats in `.qblock/` under the working folder, which in-process tests
    share (the repository). Under pytest-xdist two workers would write and read the same file at once: each
    worker keeps its own, still under the working folder (a test of two machines changes folders).
    Set and restored by hand, not with monkeypatch: an autouse fixture asking for monkeypatch would make a
    test's own os patches outlive its tmp_path, whose removal then runs through them."""
    from qblock.data import yolo_folder

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    before = yolo_folder.STATS
    if worker:
        yolo_folder.STATS = Path(".qblock") / f"export_stats-{worker}.json"
    yield
    yolo_folder.STATS = before


class RecordingConsole(Console):
    def __init__(self) -> None:
        super().__init__(file=io.StringIO(), width=400, highlight=False, color_system=None)

    @property
    def text(self) -> str:
        return self.file.getvalue()


@pytest.fixture
def console() -> RecordingConsole:
    return RecordingConsole()


def write_page(root: Path, document: str, page: str, groups: object, size=(200, 100), raw_groups: str | None = None,
               image: bool = True) -> Path:
    """One app page: a blank PNG and its groups file (``groups`` is the JSON's `groups` value)."""
    doc = root / "documents" / document
    (doc / "pages").mkdir(parents=True, exist_ok=True)
    (doc / "groups").mkdir(parents=True, exist_ok=True)
    if image:
        Image.new("RGB", size, "white").save(doc / "pages" / f"{page}.png")
    groups_file = doc / "groups" / f"{page}_groups.json"
    text = raw_groups if raw_groups is not None else json.dumps({"page": page, "groups": groups}, ensure_ascii=False)
    groups_file.write_text(text, encoding="utf-8")
    return groups_file


def bbox(x, y, w, h, **extra) -> dict:
    return {"id": "g", "blockIds": ["b1"], "combinedBbox": {"x": x, "y": y, "width": w, "height": h}, **extra}


@contextmanager
def webhook_receiver():
    """A webhook receiver on 127.0.0.1; yields (url, the JSON bodies it received)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "content_type": self.headers["Content-Type"]} | json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def webhook():
    with webhook_receiver() as receiver:
        yield receiver


@contextmanager
def ssh_server(work: Path):
    """A real OpenSSH server on 127.0.0.1 with key authentication only; yields (port, user, private key).

    Needs `/usr/sbin/sshd` (Debian: openssh-server; `make test` installs it).
    """
    import getpass
    import shutil
    import socket
    import subprocess
    import time

    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    (work / "authorized_keys").chmod(0o600)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\nPidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nStrictModes no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(work / "sshd_config")],
                              stdout=subprocess.DEVNULL, stderr=open(work / "sshd.log", "w"))  # noqa: SIM115
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start: {(work / 'sshd.log').read_text()}") from None
                time.sleep(0.2)
        yield port, getpass.getuser(), work / "client_key"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(params=["folder", "ssh"])
def nas(request, tmp_path):
    """The NAS: a folder (a mounted share), or a real OpenSSH server on 127.0.0.1 with a key.

    Yields (the `qblock remote set` arguments, the folder where the store lands)."""
    store = tmp_path / "nas" / "qblock-store"
    store.parent.mkdir()
    if request.param == "folder":
        yield [str(store)], store
        return
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("needs openssh-server (`make test` installs it)")
    with ssh_server(tmp_path / "ssh") as (port, user, key):
        yield [f"ssh://{user}@127.0.0.1:{port}{store.as_posix()}", "--keyfile", str(key)], store


@pytest.fixture(autouse=True)
def pillow_unpatched():
    """Importing ultralytics anywhere patches PIL.Image.open for the whole process (see
    yolo_env._restore_pil_open); the stages never run beside it, so tests must not either."""
    yield
    import sys

    if "ultralytics.utils.patches" in sys.modules:
        from qblock.model.yolo_env import _restore_pil_open

        _restore_pil_open()


@functools.lru_cache(maxsize=8)
def conf_params(*overrides: str):
    """This project's conf/ composed (with Hydra overrides) and checked: the params the stages really get."""
    from qblock.config.compose import compose_params
    from qblock.config.schema import parse_params

    return parse_params(compose_params(REPO, list(overrides)))


def params_of(section: str, **changes):
    """One section of the project's params (``export``, ``split``, ...), with some values changed."""
    return dataclasses.replace(getattr(conf_params(), section), **changes)


# A made-up token in a Telegram-style webhook path: the session's pipeline sends to it, and test_secrets
# looks for it everywhere the project shares (git history, params.yaml, dvc.lock, the NAS, MLflow).
# Assembled at run time: this file is in every copy of the project, and the token must appear nowhere in it.
FAKE_BOT_TOKEN = "123456789:" + "AAFakeToken" + "OnlyForQblockTests_z9y8x7w6"


@pytest.fixture(scope="session")
def session_webhook():
    """(a Telegram-style URL with FAKE_BOT_TOKEN on a receiver on 127.0.0.1, the JSON bodies it received)."""
    with webhook_receiver() as (url, received):
        yield url.replace("/hook", f"/bot{FAKE_BOT_TOKEN}/sendMessage?chat_id=42"), received


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory, session_webhook) -> dict:
    """One copy of the project trained by the real `dvc repro` (smoke preset), shared by the session.

    Read it as it is; to change it, `tests.repos.fork` it first. Yields {"repo", "first"}: the
    folder and what the first `dvc repro` printed.
    """
    from tests.repos import train_a_smoke_repo

    return train_a_smoke_repo(tmp_path_factory.mktemp("trained") / "repo", session_webhook[0])

"""`qblock server`: MLflow's tracking server for a team, the way MLflow documents it: runs and the
model registry in a real database (PostgreSQL), runs' files and models on the NAS, served over
HTTP (`--serve-artifacts`, so clients need no NAS mount or database password of their own).

One SQLite file is right for one person on one machine. Two queued experiments, or the laptop and
the desktop, writing at once lock it, and SQLite on a network share is unsafe. With the server
running on the desktop, every machine sets `mlflow.tracking_uri: http://desktop:5000` in conf/.

The database URI holds a password, so it comes from $QBLOCK_SERVER_DB (or `server_db` in
`.qblock/machine.yaml`), never from conf/; the artifact folder from `--artifacts` (or
`server_artifacts` in the machine file).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from qblock.core import machine, secrets
from qblock.core.errors import UserError

DB_ENV = "QBLOCK_SERVER_DB"
DB_KEY, ARTIFACTS_KEY = "server_db", "server_artifacts"


def database_uri(given: str | None) -> str:
    uri = given or os.environ.get(DB_ENV) or machine.setting(DB_KEY)
    if not uri:
        raise UserError(f"no database for the tracking server: set {DB_ENV}=postgresql://<user>:<password>@<host>/<db> "
                        f"(or `{DB_KEY}:` in {machine.MACHINE_FILE.as_posix()}); the README's team server section "
                        "shows how to create one")
    if not str(uri).startswith(("postgresql://", "postgresql+psycopg2://", "mysql", "mssql", "sqlite:")):
        raise UserError(f"{secrets.redact(str(uri))}: not a database URI MLflow takes (postgresql://...)")
    return str(uri)


def artifacts_uri(given: str | None) -> str:
    location = given or machine.setting(ARTIFACTS_KEY)
    if not location:
        raise UserError(f"where should runs' files and models go? --artifacts PATH (the NAS, e.g. Z:\\qblock-mlflow "
                        f"or /mnt/nas/qblock-mlflow), or `{ARTIFACTS_KEY}:` in {machine.MACHINE_FILE.as_posix()}")
    location = str(location)
    if "://" in location:
        return location
    path = Path(location).expanduser()
    if not path.parent.is_dir():
        raise UserError(f"{path.parent} does not exist: is the NAS mounted (or the drive mapped)?")
    path.mkdir(exist_ok=True)
    return path.resolve().as_uri()


def allowed_hosts(port: int, extra: list[str]) -> str:
    """The Host headers the server answers: this machine's names and private addresses (MLflow's DNS-rebinding
    guard otherwise refuses http://desktop:5000): the LAN's, Tailscale's (100.64.0.0/10 and its *.ts.net
    names) and IPv6 link-local and unique-local ones ([fe80::...], [fd..::...]), as fnmatch patterns."""
    name = socket.gethostname()
    hosts = ["localhost", "127.0.0.1", "[::1]", name, f"{name}.local", f"{name}.lan", *extra, "10.*", "172.*",
             "192.168.*", "100.*", "*.ts.net", "[[]fe80:*", "[[]fd*"]
    with_ports = [h for host in hosts for h in (host, f"{host}:{port}")]
    return ",".join(dict.fromkeys(with_ports))


def mlflow_server_command(store: str, artifacts: list[str], host: str, port: int, extra_hosts: list[str]) -> list[str]:
    """`mlflow server` on ``store`` with ``artifacts`` options, answering this machine's names (and
    ``extra_hosts``) past MLflow's DNS-rebinding guard: the one builder of `qblock ui` and `qblock server`."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, *artifacts, "--host", host,
            "--port", str(port), "--allowed-hosts", allowed_hosts(port, extra_hosts),
            "--uvicorn-opts", "--no-access-log"]  # a line per request (hundreds an hour) buries what matters


def server_command(db: str, artifacts: str, host: str, port: int, extra_hosts: list[str]) -> list[str]:
    return mlflow_server_command(db, ["--artifacts-destination", artifacts, "--serve-artifacts"], host, port,
                                 extra_hosts)

"""`qblock ui --auth`: MLflow's own basic-auth app (`mlflow server --app-name basic-auth`).

Its settings go to `.qblock/ui_auth.ini`, its users to `.qblock/ui_auth.db` and the key that signs
its forms (CSRF) to `.qblock/ui_auth.key`, all per machine and never committed. The admin
password is never written anywhere by qblock and has no default: it comes from
$QBLOCK_UI_PASSWORD or `ui_password` in `.qblock/machine.yaml`, and MLflow reads it from its own
$MLFLOW_AUTH_ADMIN_PASSWORD when it first creates the admin user (later changes of it are
ignored: delete `.qblock/ui_auth.db` to start the users over).
"""

from __future__ import annotations

import os
from pathlib import Path
from secrets import token_hex

from qblock.core import secrets
from qblock.core.errors import UserError
from qblock.core.machine import MACHINE_FILE

ADMIN = "admin"
MIN_PASSWORD = 12  # MLflow's own rule for its users' passwords


def auth_environment(root: Path) -> dict[str, str]:
    """The environment for `mlflow server --app-name basic-auth`: its config file and the admin password."""
    password = secrets.ui_password(root)
    if not password:
        raise UserError(f"--auth needs the admin password: set {secrets.UI_PASSWORD_ENV} in the environment, or "
                        f"`{secrets.UI_PASSWORD_MACHINE_KEY}: ...` in {MACHINE_FILE.as_posix()} (per machine, never "
                        f"committed). There is no default password.")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"{secrets.UI_PASSWORD_ENV}: MLflow wants a password of at least {MIN_PASSWORD} characters")
    folder = (root / MACHINE_FILE).parent.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    users = folder / "ui_auth.db"
    config = folder / "ui_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{users.as_posix()}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n", encoding="utf-8")
    key = folder / "ui_auth.key"
    if not key.is_file():
        with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
            out.write(token_hex(32))
    if not users.exists():  # SQLite takes an empty file as a new database: created here, so it is born private
        os.close(os.open(users, os.O_WRONLY | os.O_CREAT, 0o600))
    for private in (key, users):  # the signing key and the password hashes: this user's alone (POSIX)
        os.chmod(private, 0o600)
    return {"MLFLOW_FLASK_SERVER_SECRET_KEY": key.read_text(encoding="utf-8").strip()} | dict(os.environ) | {
        "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": password}

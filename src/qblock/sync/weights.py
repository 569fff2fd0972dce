"""`qblock weights fetch NAME`: pretrained weights, downloaded once, on purpose, then carried by DVC.

The pipeline itself never downloads anything. This command fetches ``NAME.pt`` from the release
assets ultralytics publishes (github.com/ultralytics/assets), checks its SHA-256 against the digest
GitHub publishes for that asset, puts it at ``weights/NAME.pt`` and `dvc add`s it, so that
`qblock publish` pushes it to the NAS and the other machine pulls it with the data. A model
config with ``weights: auto`` (all of conf/model/) starts from ``weights/<model name>.pt`` when
it is there.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from qblock.core.errors import UserError
from qblock.sync.commands import run

WEIGHTS_DIR = "weights"
RELEASE_TAG = "v8.4.0"  # the assets release ultralytics 8.4 itself downloads from
RELEASE_API = "https://api.github.com/repos/ultralytics/assets/releases/tags/{tag}"
TIMEOUT_S = 30
CHUNK = 1 << 20


def _get(url: str) -> Any:  # the response: a context manager with read()
    request = urllib.request.Request(url, headers={"User-Agent": "qblock", "Accept": "application/json, */*"})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (https, or a test's loopback)


def offline_hint(name: str, root: Path) -> str:
    target = root / WEIGHTS_DIR / f"{name}.pt"
    return (f"Without internet here: download {name}.pt from https://github.com/ultralytics/assets/releases "
            f"on another machine, put it at {target}, and run `dvc add {Path(WEIGHTS_DIR) / f'{name}.pt'}`.")


def find_asset(name: str, release_url: str, root: Path) -> tuple[str, str, int]:
    """The download URL, SHA-256 and size of ``NAME.pt`` in the release described at ``release_url``."""
    try:
        with _get(release_url) as answer:
            release = json.loads(answer.read().decode("utf-8"))
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        raise UserError(f"cannot read the release list at {release_url} ({exc}).\n{offline_hint(name, root)}") \
            from None
    assets = {a.get("name"): a for a in release.get("assets", []) if isinstance(a, dict)}
    asset = assets.get(f"{name}.pt")
    if asset is None:
        known = sorted(n[:-3] for n in assets if isinstance(n, str) and n.endswith(".pt"))
        raise UserError(f"{name}.pt is not in the release at {release_url}; it has: {', '.join(known) or 'none'}")
    digest = str(asset.get("digest") or "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise UserError(f"the release at {release_url} publishes no SHA-256 for {name}.pt, so it cannot be "
                        f"checked; {offline_hint(name, root)[len('Without internet here: '):]}")
    return str(asset["browser_download_url"]), digest.split(":", 1)[1], int(asset.get("size") or 0)


def download(url: str, target: Path, sha256: str, size: int) -> None:
    """``url`` to ``target`` through a partial file, checked against ``sha256`` before it is renamed."""
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    columns = (TextColumn(target.name), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with _get(url) as answer, partial.open("wb") as out, Progress(*columns, transient=True) as progress:
            task = progress.add_task("download", total=size or None)
            while chunk := answer.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                progress.update(task, advance=len(chunk))
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"downloading {url} failed ({exc}); nothing was written to {target}") from None
    if digest.hexdigest() != sha256:
        partial.unlink(missing_ok=True)
        raise UserError(f"{url}: the download's SHA-256 is {digest.hexdigest()}, the release says {sha256}; "
                        f"nothing was written to {target}. Try again; if it persists, the file was altered.")
    partial.replace(target)


def fetch(name: str, root: Path, console: Console, release_url: str | None = None) -> Path:
    """Fetch ``weights/NAME.pt`` (once), check it, `dvc add` it; return its path."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name.endswith(".pt"):
        raise UserError(f"{name!r}: give a model name such as yolov8m (no path, no .pt)")
    target = root / WEIGHTS_DIR / f"{name}.pt"
    if target.is_file():
        console.print(f"weights: {target} is already here; nothing downloaded")
    else:
        url, sha256, size = find_asset(name, release_url or RELEASE_API.format(tag=RELEASE_TAG), root)
        target.parent.mkdir(parents=True, exist_ok=True)
        console.print(f"weights: downloading {url}")
        download(url, target, sha256, size)
        console.print(f"weights: {target} ({target.stat().st_size / 1e6:.1f} MB), SHA-256 {sha256[:16]}… checked")
    if (root / ".dvc").is_dir():
        run(["dvc", "add", str(Path(WEIGHTS_DIR) / target.name)], root, f"`dvc add` of {target}")
        console.print(f"weights: tracked by DVC; commit {Path(WEIGHTS_DIR) / target.name}.dvc and "
                      f"`qblock publish` carries it to the NAS")
    return target

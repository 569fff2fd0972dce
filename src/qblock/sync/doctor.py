"""`qblock doctor`: is this machine ready to publish, train and pull? Each problem comes with
the command that fixes it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from qblock.core.errors import UserError
from qblock.sync.remote import not_on_remote, probe, remote_url, run


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_remote(root: Path) -> list[Check]:
    url = remote_url(root)
    if url is None:
        return [Check("NAS remote", False, "no remote on this machine", "qblock remote set PATH_OR_SSH_URL")]
    try:
        probe(root, url)
    except UserError as exc:
        return [Check("NAS remote", False, str(exc), f"qblock remote set {url}  (once the NAS answers)")]
    checks = [Check("NAS remote", True, f"{url}: reachable and writable")]
    try:
        missing = not_on_remote(root)
    except UserError as exc:
        return [*checks, Check("data pushed", False, str(exc), "dvc status --cloud --remote nas  (to see it whole)")]
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else "")
        checks.append(Check("data pushed", False, f"not on the NAS yet: {shown}", "dvc push --remote nas"))
    else:
        checks.append(Check("data pushed", True, "everything this commit needs is on the NAS"))
    return checks


def check_git(root: Path) -> list[Check]:
    ahead = run(["git", "rev-list", "--count", "@{upstream}..HEAD"], root, "git rev-list", check=False)
    if ahead.returncode != 0:
        return [Check("commits pushed", False, "this branch has no upstream", "git push -u origin HEAD")]
    count = int(ahead.stdout.strip() or 0)
    if count:
        return [Check("commits pushed", False, f"{count} commit(s) not pushed",
                      "qblock doctor until `data pushed` is ok, then git push")]
    return [Check("commits pushed", True, "in step with the upstream branch")]


def check_cache(root: Path) -> list[Check]:
    configured = run(["dvc", "config", "cache.type"], root, "dvc config", check=False).stdout.strip() or "reflink,copy"
    doctor = run(["dvc", "doctor"], root, "dvc doctor", check=False).stdout
    supported = next((line.split(":", 1)[1].strip() for line in doctor.splitlines() if "Cache types" in line), "?")
    if supported.startswith("<"):  # DVC can tell only once the cache holds data
        return [Check("cache links", True, f"cache.type {configured}; the cache is empty so far")]
    copies = "reflink" not in supported and configured.startswith("reflink")
    detail = f"cache.type {configured}; this filesystem supports {supported}"
    if copies:
        return [Check("cache links", True, detail + ": the workspace holds copies (twice the disk for data)",
                      "dvc config --local cache.type hardlink  (saves space; DVC then protects files from edits)")]
    return [Check("cache links", True, detail)]


def check_params(root: Path) -> list[Check]:
    from qblock.config.compose import check_params_in_sync

    try:
        differences = check_params_in_sync(root)
    except UserError as exc:
        return [Check("params", False, str(exc), "qblock params")]
    if differences:
        shown = "; ".join(differences[:3])
        return [Check("params", False, f"params.yaml differs from conf/: {shown}", "qblock params")]
    return [Check("params", True, "params.yaml matches conf/")]


def run_doctor(root: Path, console: Console) -> bool:
    checks = check_params(root) + check_remote(root) + check_git(root) + check_cache(root)
    for check in checks:
        mark = "[green]ok     [/]" if check.ok else "[red]problem[/]"
        console.print(f"{mark} {check.name}: {check.detail}", highlight=False, soft_wrap=True)
        if check.fix:
            console.print(f"        fix: [bold]{check.fix}[/]", highlight=False, soft_wrap=True)
    problems = sum(not check.ok for check in checks)
    console.print(f"doctor: {problems} problem(s)" if problems else "doctor: all good")
    return not problems

"""Benchmark: `dvc push` of 10,000 pages to an SSH remote, beside rsync of the same tree.

    python bench/sync.py                 # 10,000 pages of 40 kB (about 400 MB)
    python bench/sync.py --pages 2000

Starts its own OpenSSH server on 127.0.0.1 (key authentication; needs openssh-server and rsync),
builds a repo whose `data/dataset_root` holds the pages (random bytes, so every page is its own
DVC object), and prints, from one run: the first `dvc push`, `rsync -a` of the same folder over
the same SSH server, and a `dvc push` after adding 50 new pages. Loopback measures the tools'
own overhead (per-file round trips, hashing), not a network.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _harness import timed, work_folder  # noqa: E402  (bench/, the script's own folder)
from tests.conftest import ssh_server  # noqa: E402
from tests.test_push import write_pages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    with work_folder(args.work, "qblock-sync-") as work:
        measure(work, args.pages)


def measure(work: Path, pages: int) -> None:
    repo = work / "repo"
    repo.mkdir(parents=True)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*dvc, "init", "-q"], cwd=repo, check=True)
    start = time.perf_counter()
    write_pages(repo / "data" / "dataset_root", pages, seed=0)
    subprocess.run([*dvc, "add", "-q", "data/dataset_root"], cwd=repo, check=True)
    print(f"{pages} pages written and `dvc add`ed in {time.perf_counter() - start:.0f} s under {work}")

    with ssh_server(work / "ssh") as (port, user, key):
        store = work / "nas" / "qblock-store"
        subprocess.run([sys.executable, "-m", "qblock", "remote", "set", f"ssh://{user}@127.0.0.1:{port}{store}",
                        "--keyfile", str(key)], cwd=repo, check=True, stdout=subprocess.DEVNULL)
        first = timed([*dvc, "push"], repo)
        ssh = f"ssh -p {port} -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        rsync = timed(["rsync", "-a", "-e", ssh, "data/dataset_root/", f"{user}@127.0.0.1:{work / 'nas' / 'rsync'}/"],
                      repo)
        write_pages(repo / "data" / "dataset_root" / "new", 50, seed=1)
        start = time.perf_counter()
        subprocess.run([*dvc, "add", "-q", "data/dataset_root"], cwd=repo, check=True)
        added = time.perf_counter() - start
        again = timed([*dvc, "push"], repo)

    print(f"\n{'':34}{'seconds':>9}")
    print(f"{'dvc push, ' + str(pages) + ' pages':34}{first:>9.1f}")
    print(f"{'rsync -a over ssh, same tree':34}{rsync:>9.1f}   (dvc push / rsync: {first / rsync:.2f}x)")
    print(f"{'dvc add after 50 new pages':34}{added:>9.1f}")
    print(f"{'dvc push of those 50 pages':34}{again:>9.1f}")


if __name__ == "__main__":
    main()

"""Benchmark: the first push of a page collection to an SSH NAS, each way qblock could push it,
beside `rsync -a` of the same tree over the same server.

    python bench/sync.py                      # 10,000 pages of 40 kB, then 1,000 pages of 300 kB
    python bench/sync.py --cases 2000x40

Starts its own OpenSSH server on 127.0.0.1 (key authentication; needs openssh-server and rsync),
builds a repo whose `data/dataset_root` holds the pages (random bytes, so every page is its own
DVC object; 300 kB is a scanned page as PNG), and pushes them into a fresh store per way:
`dvc push` (each object over SFTP), `qblock push` (what the NAS lacks in one tar stream over one
ssh connection, then `dvc push` to confirm), and rsync. After `qblock push`, `dvc status --cloud`
must find everything on the NAS. Then 50 new pages, pushed by `qblock push`. Loopback measures the
tools' own overhead (per-object round trips, hashing, crypto on one core), not a network.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _harness import timed, work_folder  # noqa: E402  (bench/, the script's own folder)
from tests.conftest import ssh_server  # noqa: E402
from tests.test_push import write_pages  # noqa: E402

DVC = [sys.executable, "-m", "dvc"]
QBLOCK = [sys.executable, "-m", "qblock"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["10000x40", "1000x300"],
                        help="PAGESxKB: that many pages of that many kB each")
    parser.add_argument("--work", type=Path, help="working folder, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    rows = []
    with work_folder(args.work, "qblock-sync-") as work:
        for case in args.cases:
            pages, kb = (int(n) for n in case.lower().split("x"))
            rows.append(measure(work / case, pages, kb))
    print(f"\n{'':30}{'dvc push':>10}{'qblock push':>13}{'rsync -a':>10}{'dvc/rsync':>11}{'qblock/rsync':>14}"
          f"{'+50 pages':>11}")
    for row in rows:
        print(f"{row['case']:30}{row['dvc']:>9.1f}s{row['qblock']:>12.1f}s{row['rsync']:>9.1f}s"
              f"{row['dvc'] / row['rsync']:>10.1f}x{row['qblock'] / row['rsync']:>13.1f}x{row['again']:>10.1f}s")


def set_remote(repo: Path, url: str, key: Path) -> None:
    subprocess.run([*QBLOCK, "remote", "set", url, "--keyfile", str(key)], cwd=repo, check=True,
                   stdout=subprocess.DEVNULL)


def measure(work: Path, pages: int, kb: int) -> dict:
    repo = work / "repo"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*DVC, "init", "-q"], cwd=repo, check=True)
    start = time.perf_counter()
    write_pages(repo / "data" / "dataset_root", pages, seed=0, size=kb * 1000)
    subprocess.run([*DVC, "add", "-q", "data/dataset_root"], cwd=repo, check=True)
    case = f"{pages} pages of {kb} kB ({pages * kb / 1000:.0f} MB)"
    print(f"{case}: written and `dvc add`ed in {time.perf_counter() - start:.0f} s under {work}", flush=True)

    with ssh_server(work / "ssh") as (port, user, key):
        def store(name: str) -> str:
            return f"ssh://{user}@127.0.0.1:{port}{work / 'nas' / name}"

        set_remote(repo, store("by-dvc"), key)
        dvc = timed([*DVC, "push"], repo)
        print(f"  dvc push    {dvc:6.1f} s", flush=True)
        set_remote(repo, store("by-qblock"), key)
        qblock = timed([*QBLOCK, "push"], repo)
        status = subprocess.run([*DVC, "status", "--cloud", "--json"], cwd=repo, capture_output=True, text=True)
        assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout + status.stderr
        print(f"  qblock push {qblock:6.1f} s (dvc status --cloud: everything on the NAS)", flush=True)
        ssh = f"ssh -p {port} -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        rsync = timed(["rsync", "-a", "-e", ssh, "data/dataset_root/", f"{user}@127.0.0.1:{work / 'nas' / 'rsync'}/"],
                      repo)
        print(f"  rsync -a    {rsync:6.1f} s", flush=True)
        write_pages(repo / "data" / "dataset_root" / "new", 50, seed=1, size=kb * 1000)
        subprocess.run([*DVC, "add", "-q", "data/dataset_root"], cwd=repo, check=True)
        again = timed([*QBLOCK, "push"], repo)
    return {"case": case, "dvc": dvc, "qblock": qblock, "rsync": rsync, "again": again}


if __name__ == "__main__":
    main()

"""The weekly loop under faults nobody here made: a NAS that is not mounted, files a round did not write."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from tests.repos import published_laptop, sh
from tests.test_round_trip import clone

pytestmark = pytest.mark.slow


def qb(*args: str, cwd: Path, check: bool = False):
    return sh([sys.executable, "-m", "qblock", *args], cwd, check=check)


def heads(laptop: Path, origin: Path) -> tuple[str, str]:
    return (sh(["git", "rev-parse", "HEAD"], laptop).stdout.strip(),
            sh(["git", "--git-dir", str(origin), "rev-parse", "HEAD"], laptop).stdout.strip())


def relabel(app: Path) -> None:
    """A person moves one box in the app: something for publish to commit."""
    groups = sorted(app.glob("documents/*/groups/*_groups.json"))[0]
    data = json.loads(groups.read_text(encoding="utf-8"))
    data["groups"][0]["combinedBbox"]["y"] += 1
    groups.write_text(json.dumps(data), encoding="utf-8")


def test_a_nas_that_is_not_mounted_stops_publish_before_it_commits_and_is_never_made_locally(tmp_path):
    laptop, origin, nas = published_laptop(tmp_path)
    relabel(tmp_path / "app")
    before = heads(laptop, origin)

    gone = nas.with_name("qblock-store.gone")
    nas.rename(gone)  # the share is not mounted: its folder is not there
    for command in (("publish",), ("pull-model",), ("desktop-run",)):
        result = qb(*command, cwd=laptop)
        said = " ".join(result.stdout.split())
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, command
        assert "the NAS is not mounted: the folder does not exist" in said, command
        assert not nas.exists(), f"{command}: the store was made on the local disk"
    assert heads(laptop, origin) == before

    nas.mkdir()  # an empty mount point: the folder is there, the share is not
    result = qb("publish", cwd=laptop)
    assert result.returncode == 1 and "holds no qblock store" in " ".join(result.stdout.split())
    assert list(nas.iterdir()) == [] and heads(laptop, origin) == before
    doctor = " ".join(qb("doctor", cwd=laptop).stdout.split())
    assert "the NAS is not mounted" in doctor and "reachable and writable" not in doctor

    nas.rmdir()
    gone.rename(nas)  # mounted again: publish goes through
    result = qb("publish", cwd=laptop)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "publish: done" in result.stdout and heads(laptop, origin) != before


def test_an_old_store_without_the_mark_is_recognised_by_its_data_and_marked(tmp_path):
    laptop, _, nas = published_laptop(tmp_path)
    (nas / ".qblock-remote").unlink()  # set by an older qblock: DVC's data, no mark
    assert (nas / "files").is_dir()
    assert qb("doctor", cwd=laptop).returncode in (0, 1)
    assert (nas / ".qblock-remote").is_file()


def test_a_round_commits_only_what_it_wrote_and_never_pushes_a_secret(tmp_path):
    laptop, origin, _ = published_laptop(tmp_path)
    secret = "AAH3kq_9f8d7s6a5d4f3g2h1j0k9l8m7n6b"  # joined at run time: this file itself holds no token
    token = "https://api.telegram.org/" + "bot123456789:" + secret + "/sendMessage?chat_id=1"
    (laptop / ".env").write_text(f"QBLOCK_NOTIFY_WEBHOOK_URL={token}\n")
    (laptop / "notes.txt").write_text("the desktop's fan is loud\n")
    config = laptop / "conf" / "config.yaml"
    config.write_text(config.read_text() + "# a stray edit\n")
    relabel(tmp_path / "app")

    result = qb("publish", cwd=laptop)
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert "left uncommitted, not written by publish" in said
    assert ".env" in said and "notes.txt" in said and "conf/config.yaml" in said
    pushed = sh(["git", "--git-dir", str(origin), "show", "--name-only", "--format=", "HEAD"], laptop).stdout.split()
    assert "data/dataset_root.dvc" in pushed
    assert not {".env", "notes.txt", "conf/config.yaml"} & set(pushed)
    assert sh(["git", "status", "--porcelain"], laptop).stdout.count("\n") == 3  # all three still here, as they were

    sh(["git", "add", ".env"], laptop)  # a person commits the token by mistake: publish will not push it
    sh(["git", "commit", "-qm", "settings"], laptop)
    relabel(tmp_path / "app")
    before = sh(["git", "--git-dir", str(origin), "rev-parse", "HEAD"], laptop).stdout
    result = qb("publish", cwd=laptop)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "refusing to push to git" in said and ".env line 1: a Telegram bot token" in said
    assert secret not in result.stdout + result.stderr
    assert sh(["git", "--git-dir", str(origin), "rev-parse", "HEAD"], laptop).stdout == before


def test_with_an_app_folder_proposals_and_accepted_labels_live_there_and_survive_publish(tmp_path, trained_repo):
    laptop, origin, _ = published_laptop(tmp_path)
    app = tmp_path / "app"
    first = sorted(app.glob("documents/*/pages/*.png"))[0]
    new = app / "documents" / "new workbook" / "pages"
    new.mkdir(parents=True)
    for number in (1, 2):  # two pages nobody labeled yet (rescans: not byte for byte a labeled page)
        with Image.open(first) as image:
            rescan = image.convert("RGB")
        rescan.putpixel((0, 0), (250, 250, 240 + number))
        rescan.save(new / f"page_00{number}.png")
    (laptop / "finder.pt").write_bytes((trained_repo["repo"] / "models" / "best.pt").read_bytes())

    done = qb("propose", "new workbook", "--model", "finder.pt", "--conf", "0.01", cwd=laptop, check=True)
    assert "2 page(s) proposed" in " ".join(done.stdout.split())
    assert len(list((app / "documents" / "new workbook" / "proposals").glob("*_groups.json"))) == 2
    assert not (laptop / "data" / "dataset_root" / "documents" / "new workbook").exists()  # not in the copy
    qb("propose", "--accept", "new workbook/page_001", cwd=laptop, check=True)
    accepted = app / "documents" / "new workbook" / "groups" / "page_001_groups.json"
    assert accepted.is_file()
    assert "new workbook" in qb("status", "--offline", cwd=laptop, check=True).stdout

    # an older qblock accepted a page in the project's copy: publish copies it back, never deletes it
    copy = laptop / "data" / "dataset_root" / "documents"
    page = sorted(copy.glob("*/pages/*.png"))[-1]
    label = page.parent.parent / "groups" / f"{page.stem}_groups.json"
    in_app = app / "documents" / label.relative_to(copy)
    in_app.unlink()  # the app has the page, not yet its label
    label.write_text('{"groups": []}')
    result = qb("publish", cwd=laptop, check=True)
    said = " ".join(result.stdout.split())
    assert "copied back into" in said and in_app.is_file() and label.is_file()
    assert (copy / "new workbook" / "groups" / "page_001_groups.json").is_file()  # mirrored in and published
    assert accepted.is_file()
    pushed = sh(["git", "--git-dir", str(origin), "log", "-1", "--format=%s"], laptop).stdout
    assert pushed.startswith("labels:")


def test_a_damaged_model_is_one_line_in_propose_a_problem_in_doctor_and_replaced_by_pull_model(tmp_path, trained_repo):
    from tests.repos import folder_nas, fork

    repo = fork(trained_repo["repo"], tmp_path / "repo")
    qb("remote", "set", str(folder_nas(tmp_path)), cwd=repo, check=True)
    sh(["dvc", "push", "--remote", "nas"], repo)
    sh(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], tmp_path)
    sh(["git", "remote", "add", "origin", str(tmp_path / "origin.git")], repo)
    sh(["git", "push", "-q", "-u", "origin", "HEAD"], repo)
    model = repo / "models" / "best.pt"
    whole = model.read_bytes()
    model.unlink()  # it may be a link into DVC's cache: a new file, cut short as by a full disk
    model.write_bytes(whole[: len(whole) // 2])
    sorted((repo / "data" / "dataset_root").glob("documents/*/groups/*_groups.json"))[0].unlink()  # a page to propose

    result = qb("propose", "--model", "models/best.pt", cwd=repo)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "models/best.pt: damaged, or not a model" in said and "`qblock pull-model`" in said
    assert len(result.stdout.strip().splitlines()) <= 4
    doctor = " ".join(qb("doctor", cwd=repo).stdout.split())
    assert "problem model: models/best.pt" in doctor and "is not the model dvc.lock records" in doctor

    pulled = qb("pull-model", cwd=repo, check=True)
    assert "replacing it with the NAS's copy" in " ".join(pulled.stdout.split())
    assert model.read_bytes() == whole
    assert "ok model: models/best.pt is the model dvc.lock records" in " ".join(qb("doctor", cwd=repo).stdout.split())


def test_a_nas_that_leaves_during_the_desktops_pull_stops_it_before_training(tmp_path):
    laptop, origin, nas = published_laptop(tmp_path)
    desktop = clone(origin, tmp_path / "desktop", [str(nas)])
    gone = sorted(p for p in (nas / "files" / "md5").rglob("*.dir") if p.is_file())
    for obj in gone:  # what the NAS never sent before it left: `dvc pull --allow-missing` still exits 0
        obj.rename(tmp_path / obj.name)
    result = qb("desktop-run", cwd=desktop)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "are not all here: the NAS stopped answering" in said
    assert "dvc repro" not in said and not (desktop / "models" / "best.pt").exists()


def test_laptop_and_desktop_both_changing_conf_are_told_the_way_out_and_nothing_is_moved(tmp_path):
    laptop, origin, nas = published_laptop(tmp_path)
    desktop = clone(origin, tmp_path / "desktop", [str(nas)])

    def edit_epochs(repo: Path, epochs: int, push: bool) -> None:
        smoke = repo / "conf" / "train" / "smoke.yaml"
        smoke.write_text("\n".join(f"epochs: {epochs}" if line.startswith("epochs:") else line
                                   for line in smoke.read_text().splitlines()) + "\n")
        qb("params", cwd=repo, check=True)
        sh(["git", "commit", "-qam", f"{epochs} epochs"], repo)
        if push:
            sh(["git", "push", "-q"], repo)

    edit_epochs(desktop, 3, push=True)  # the desktop's change reached the origin
    edit_epochs(laptop, 4, push=False)  # the laptop's did not
    relabel(tmp_path / "app")
    result = qb("publish", cwd=laptop)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "git push was refused" in said and "`git pull`" in said and "git checkout --theirs dvc.lock" in said
    assert "rerun when git is reachable" not in said.lower()

    assert sh(["git", "pull", "-q", "--no-rebase"], laptop, check=False).returncode != 0  # conflicts in conf/
    doctor = qb("doctor", cwd=laptop)
    told = " ".join(doctor.stdout.split())
    assert doctor.returncode == 1 and "Traceback" not in doctor.stdout + doctor.stderr
    assert "problem git merge: a git merge is in progress, with conflicts in" in told and "smoke.yaml" in told

    # the desktop's own unpushed change, and the origin moved on: desktop-run moves nothing
    edit_epochs(desktop, 5, push=False)
    before = sh(["git", "rev-parse", "HEAD"], desktop).stdout
    sh(["git", "merge", "--abort"], laptop)
    sh(["git", "reset", "-q", "--hard", "@{upstream}"], laptop)
    sh(["git", "commit", "-q", "--allow-empty", "-m", "labels: newer"], laptop)
    sh(["git", "push", "-q"], laptop)
    result = qb("desktop-run", cwd=desktop)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and "commits the origin lacks that desktop-run did not make" in said
    assert "5 epochs" in said and sh(["git", "rev-parse", "HEAD"], desktop).stdout == before
    assert "qblock/trained-" not in sh(["git", "--git-dir", str(origin), "branch", "-a"], desktop).stdout


SAVED_DURING_PUBLISH = '''
import os, sys
from pathlib import Path

flag = Path(os.environ["QBLOCK_TEST_FLAG"])
if sys.argv[1:2] == ["export"] and flag.is_file():  # the stage starts: DVC has checked its sources already
    target = Path(flag.read_text())
    saved = target.with_name(target.name + ".saving")  # the app finishes saving the page, as apps do
    saved.write_text(os.environ["QBLOCK_TEST_WHOLE"])
    os.replace(saved, target)
    flag.unlink()
'''


def test_a_page_saved_while_publish_runs_is_snapshotted_again_not_pushed_half_written(tmp_path):
    laptop, origin, nas = published_laptop(tmp_path)
    app = tmp_path / "app"
    groups = sorted(app.glob("documents/*/groups/*_groups.json"))[0]
    whole = json.loads(groups.read_text(encoding="utf-8"))
    whole["groups"][0]["combinedBbox"]["y"] += 2
    text = json.dumps(whole)
    groups.write_text(text[: len(text) // 2], encoding="utf-8")  # the app is halfway through saving
    in_copy = laptop / "data" / "dataset_root" / groups.relative_to(app)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SAVED_DURING_PUBLISH)
    flag = tmp_path / "flag"
    flag.write_text(str(in_copy))

    result = sh([sys.executable, "-m", "qblock", "publish"], laptop, check=False,
                env={"PYTHONPATH": str(hooks), "QBLOCK_TEST_FLAG": str(flag), "QBLOCK_TEST_WHOLE": text})
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stdout + result.stderr
    assert not flag.exists(), "the app's save was never simulated"
    assert "changed while publish ran" in said and "publish: done" in said
    assert sh(["dvc", "status", "--json", "data/dataset_root.dvc"], laptop).stdout.strip() in ("{}", "")
    desktop = clone(origin, tmp_path / "desktop", [str(nas)])  # what went to the NAS is the whole file
    sh(["dvc", "pull", "-q", "--remote", "nas", "data/dataset_root.dvc"], desktop)
    assert json.loads((desktop / "data" / "dataset_root" / groups.relative_to(app)).read_text()) == whole


def test_a_push_stopped_by_a_full_nas_leaves_no_half_written_file_there(tmp_path):
    """The NAS on a small filesystem that new pages overflow: publish fails naming the full disk, commits
    nothing to the origin, and leaves no `*.tmp` among the NAS's objects; with room again it goes through."""
    import shutil
    import subprocess

    import numpy as np

    laptop, origin, nas = published_laptop(tmp_path)
    kept = tmp_path / "nas-content"
    shutil.copytree(nas, kept)
    used = sum(p.stat().st_size for p in kept.rglob("*") if p.is_file())
    shutil.rmtree(nas)
    nas.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={used // 1024 + 600}k", "tmpfs", str(nas)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small filesystem here ({mounted.stderr.strip()}): needs root")
    try:
        shutil.copytree(kept, nas, dirs_exist_ok=True)
        pages = tmp_path / "app" / "documents" / "scans" / "pages"
        pages.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for number in range(1, 5):  # noise does not compress: about 1.4 MB a page, more than the room left
            Image.fromarray(rng.integers(0, 255, (880, 640, 3), dtype=np.uint8)).save(pages / f"p{number}.png")
            groups = pages.parent / "groups" / f"p{number}_groups.json"
            groups.parent.mkdir(exist_ok=True)
            groups.write_text(json.dumps({"groups": [{"combinedBbox": {"x": 40, "y": 40, "width": 300,
                                                                        "height": 200}}]}), encoding="utf-8")
        before = heads(laptop, origin)[1]
        result = qb("publish", cwd=laptop)
        said = " ".join(result.stdout.split())
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, said
        assert "A disk is full" in said and heads(laptop, origin)[1] == before
        assert sorted(nas.rglob("*.tmp")) == []

        subprocess.run(["mount", "-o", "remount,size=64m", str(nas)], check=True)  # room made on the NAS
        result = qb("publish", cwd=laptop)
        assert result.returncode == 0, result.stdout + result.stderr
        assert heads(laptop, origin)[1] != before and sorted(nas.rglob("*.tmp")) == []
    finally:
        subprocess.run(["umount", "-l", str(nas)], capture_output=True)

"""Stage caches know which code filled them: new code (an upgrade, an edited rule) reads every page again.

Each test runs the stages from a copy of the project with its own `src/` first on the import path, edits
a module in the stage's import closure there, and runs the stage again, as `dvc repro` would after
`git pull` brought new code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.repos import copy_repo, sh

from qblock.core.code_closure import closure, code_digest


def stage(repo: Path, name: str, check: bool = True):
    return sh([sys.executable, "-m", "qblock", name], repo, check=check, env={"PYTHONPATH": str(repo / "src")})


def project_with_pages(tmp_path: Path) -> Path:
    repo = copy_repo(tmp_path / "repo")
    sh([sys.executable, "-m", "qblock", "demo-data", "data/dataset_root", "--documents", "2", "--pages", "3"], repo)
    return repo


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: the line to edit has moved"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_digest_is_of_the_stages_own_closure():
    from qblock.core import code_closure

    files = {p.relative_to(code_closure.SRC).as_posix() for p in closure("qblock.stages.validate")}
    assert {"qblock/stages/validate.py", "qblock/data/label_checks.py", "qblock/data/labels.py",
            "qblock/core/code_closure.py"} <= files
    assert not any(f.startswith(("qblock/sync/", "qblock/services/", "qblock/model/")) for f in files)
    assert code_digest("qblock.stages.export") != code_digest("qblock.stages.validate")


def test_new_export_code_writes_every_page_again(tmp_path):
    repo = project_with_pages(tmp_path)
    stage(repo, "export")
    assert "(0 files written" in " ".join(stage(repo, "export").stdout.split())  # unchanged: carried over
    labels = sorted((repo / "data" / "yolo" / "labels").glob("*.txt"))
    assert len(labels) == 6 and all(re.search(r"\d\.\d{6}\b", p.read_text()) for p in labels)

    # how a box becomes a YOLO row changes: 5 decimals instead of 6
    edit(repo / "src" / "qblock" / "data" / "labels.py", "{self.x:.6f} {self.y:.6f} {self.w:.6f} {self.h:.6f}",
         "{self.x:.5f} {self.y:.5f} {self.w:.5f} {self.h:.5f}")
    stage(repo, "export")
    for label in labels:  # every page, not only those whose files changed (none did)
        rows = label.read_text().splitlines()
        assert rows and all(re.fullmatch(r"\d+( \d\.\d{5}){4}", row) for row in rows), label.name


def test_a_new_validate_rule_checks_every_page_again(tmp_path):
    repo = project_with_pages(tmp_path)
    for name in ("export", "split", "validate"):
        stage(repo, name)
    assert "validate: ok. 6 pages" in stage(repo, "validate").stdout  # unchanged: carried over

    # the rule: every box wider than 5% of the page is an error (all of them are)
    edit(repo / "src" / "qblock" / "data" / "label_checks.py", "        seen[key] = number\n",
         "        seen[key] = number\n"
         "        if row.w > 0.05:\n"
         "            log.error(path, f'line {number}: wider than 5% of the page')\n"
         "            ok = False\n")
    result = stage(repo, "validate", check=False)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "validate: ok" not in said
    flagged = set(re.findall(r"page_00\d", said))
    assert flagged == {"page_001", "page_002", "page_003"} and said.count("wider than 5% of the page") >= 6

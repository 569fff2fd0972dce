from __future__ import annotations

import os

import pytest
from tests.conftest import bbox, write_page

from qblock.core.errors import UserError
from qblock.sync import app_mirror


def test_mirror_copies_new_and_changed_files_and_deletes_removed_ones(tmp_path):
    app, repo_copy = tmp_path / "app", tmp_path / "repo" / "data" / "dataset_root"
    groups = write_page(app, "수학 1", "page_001", [bbox(0, 0, 10, 10)])
    write_page(app, "수학 1", "page_002", [])
    assert app_mirror.mirror(app, repo_copy) == (4, 0)
    assert app_mirror.mirror(app, repo_copy) == (0, 0)  # nothing changed, nothing copied

    groups.write_text(groups.read_text().replace('"x": 0', '"x": 5'))  # same size, new content
    os.utime(groups, ns=(groups.stat().st_atime_ns, groups.stat().st_mtime_ns + 10**9))
    (app / "documents" / "수학 1" / "pages" / "page_002.png").unlink()
    assert app_mirror.mirror(app, repo_copy) == (1, 1)
    copied = repo_copy / "documents" / "수학 1" / "groups" / "page_001_groups.json"
    assert copied.read_text() == groups.read_text()
    assert not (repo_copy / "documents" / "수학 1" / "pages" / "page_002.png").exists()


def test_a_folder_that_is_not_the_apps_is_refused(tmp_path):
    with pytest.raises(UserError, match="no documents/ folder"):
        app_mirror.mirror(tmp_path, tmp_path / "copy")


def test_the_app_folder_is_remembered_per_machine(tmp_path):
    assert app_mirror.remembered(tmp_path) is None
    app_mirror.remember(tmp_path, tmp_path / "app")
    assert app_mirror.remembered(tmp_path) == (tmp_path / "app").resolve()
    assert (tmp_path / ".qblock" / "machine.yaml").is_file()  # .qblock/ is git-ignored


def test_a_link_in_the_apps_folder_leading_outside_it_is_refused_not_mirrored(tmp_path):
    app, repo_copy = tmp_path / "app", tmp_path / "repo" / "data" / "dataset_root"
    write_page(app, "수학 1", "page_001", [bbox(0, 0, 10, 10)])
    private = tmp_path / "private"
    private.mkdir()
    (private / "tax_return.png").write_bytes(b"not a page")
    (app / "documents" / "수학 1" / "pages" / "page_002.png").symlink_to(private / "tax_return.png")
    (app / "documents" / "elsewhere").symlink_to(private, target_is_directory=True)
    with pytest.raises(UserError, match=r"2 link\(s\) in .* lead outside it") as refused:
        app_mirror.mirror(app, repo_copy)
    assert "page_002.png" in str(refused.value) and "elsewhere" in str(refused.value)
    assert not repo_copy.exists()  # nothing copied

"""Each page on disk once: the export links page images instead of copying them (a copy where no
link can be made), never writes into a file it linked, and DVC's cache shares storage with the
work tree only where the app cannot rewrite a cached file in place."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest
from tests.conftest import bbox, params_of, write_page
from tests.repos import copy_repo, sh

from qblock.stages import export


def app_with_pages(root: Path) -> None:
    for document in ("algebra", "수학 2권"):
        for page in ("page_001", "page_002"):
            write_page(root, document, page, [bbox(10, 10, 80, 40)], size=(300, 400))


def run_export(tmp_path: Path, console) -> None:
    export.run(tmp_path / "app", tmp_path / "yolo", params_of("export"), tmp_path / "export.json", console)


def inode(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def test_the_export_links_each_page_image_instead_of_copying_it(tmp_path, console):
    app_with_pages(tmp_path / "app")
    run_export(tmp_path, console)
    page = tmp_path / "app" / "documents" / "algebra" / "pages" / "page_001.png"
    exported = tmp_path / "yolo" / "images" / "algebra__page_001.png"
    assert inode(exported) == inode(page) and page.stat().st_nlink == 2
    pages = sorted((tmp_path / "app" / "documents").glob("*/pages/*.png"))
    assert len({inode(p) for p in pages}) == len(pages) == len(list((tmp_path / "yolo" / "images").iterdir()))
    assert {inode(p) for p in pages} == {inode(p) for p in (tmp_path / "yolo" / "images").iterdir()}

    # the app replaces a page (a new file): the export links the new one, the old bytes are untouched
    old = page.read_bytes()
    replacement = page.with_name("new.png")
    write_page(tmp_path / "other", "x", "y", [], size=(300, 401))
    replacement.write_bytes((tmp_path / "other" / "documents" / "x" / "pages" / "y.png").read_bytes())
    os.replace(replacement, page)
    run_export(tmp_path, console)
    assert inode(exported) == inode(page) and exported.read_bytes() != old
    assert not list((tmp_path / "yolo" / "images").glob(".*"))  # no temporary file left


def test_where_no_link_can_be_made_the_export_copies(tmp_path, console, monkeypatch):
    def no_links(source, target):  # as across drives, or on FAT
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    app_with_pages(tmp_path / "app")
    run_export(tmp_path, console)
    page = tmp_path / "app" / "documents" / "algebra" / "pages" / "page_001.png"
    exported = tmp_path / "yolo" / "images" / "algebra__page_001.png"
    assert exported.read_bytes() == page.read_bytes() and inode(exported) != inode(page)
    assert page.stat().st_nlink == 1


def cache_objects_are_intact(cache: Path) -> int:
    """Every file object in a DVC cache (or a folder remote) still hashes to its name; how many there are."""
    count = 0
    for path in (cache / "files" / "md5").glob("*/*"):
        if path.suffix == ".dir":
            continue
        assert hashlib.md5(path.read_bytes()).hexdigest() == path.parent.name + path.name, path
        count += 1
    return count


def footprint(*folders: Path) -> int:
    """Bytes on disk under ``folders``, each inode once."""
    seen, total = set(), 0
    for folder in folders:
        for path in folder.rglob("*"):
            info = path.lstat()
            if path.is_file() and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


@pytest.mark.slow
def test_with_the_apps_own_folder_the_cache_shares_storage_and_an_in_place_edit_changes_nothing_cached(tmp_path):
    laptop = copy_repo(tmp_path / "laptop")
    qb = [sys.executable, "-m", "qblock"]
    sh([*qb, "remote", "set", str(tmp_path / "nas")], laptop)
    app = tmp_path / "app"
    sh([*qb, "demo-data", str(app), "--documents", "3", "--pages", "2"], laptop)
    pages = footprint(app / "documents")
    before = sh([*qb, "doctor"], laptop, check=False).stdout

    sh([*qb, "publish", "--app", str(app)], laptop, check=False)  # no git origin here: the push step fails
    assert "cache.type reflink,copy" in before
    config = (laptop / ".dvc" / "config.local").read_text()
    assert "hardlink,copy" in config and "reflink" not in config
    data = laptop / "data"
    repo_pages = sorted((data / "dataset_root" / "documents").glob("*/pages/*.png"))
    app_pages = sorted((app / "documents").glob("*/pages/*.png"))
    assert repo_pages and all(p.stat().st_nlink >= 3 for p in repo_pages)  # work tree, cache and export: one file
    assert all(p.stat().st_nlink == 1 for p in app_pages)  # the app's own files are never linked
    assert sh(["git", "ls-files", "data/yolo"], laptop).stdout == ""  # the export is rebuilt, never in git
    ratio = footprint(data, laptop / ".dvc" / "cache") / pages
    assert ratio <= 1.3, ratio
    objects = cache_objects_are_intact(laptop / ".dvc" / "cache")

    # the app rewrites one of its groups files and one page in place, as an editor would
    groups = next((app / "documents").glob("*/groups/*_groups.json"))
    with open(groups, "r+b") as handle:
        handle.seek(0)
        handle.write(b"{" + b" " * 3)
    with open(app_pages[0], "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    assert cache_objects_are_intact(laptop / ".dvc" / "cache") == objects
    assert cache_objects_are_intact(tmp_path / "nas") == objects  # the NAS has them all, intact
    assert "modified" not in sh(["dvc", "status", "data/dataset_root.dvc"], laptop).stdout  # the repo's copy too

    # a change of link type, then checkout: the work tree follows and dvc status stays clean
    sh(["dvc", "config", "--local", "cache.type", "reflink,copy"], laptop)
    sh(["dvc", "checkout", "--relink", "--allow-missing"], laptop)
    assert all(p.stat().st_nlink == 1 for p in repo_pages)
    assert "modified" not in sh(["dvc", "status", "data/dataset_root.dvc"], laptop).stdout


def test_a_read_only_linked_page_is_replaced_and_removed_as_windows_allows(tmp_path, monkeypatch):
    """DVC marks files it shares with the cache read-only; Windows then refuses to rename over them or
    delete them (Linux and macOS do not). os.replace and os.unlink here follow Windows' rule."""
    from qblock.core import files

    real_replace, real_unlink = os.replace, os.unlink

    def read_only_refused(path) -> None:
        if os.path.exists(path) and not os.stat(path).st_mode & 0o200:
            raise PermissionError(13, "Access is denied", str(path))

    monkeypatch.setattr(os, "replace", lambda src, dst: (read_only_refused(dst), real_replace(src, dst))[1])
    monkeypatch.setattr(os, "unlink", lambda path: (read_only_refused(path), real_unlink(path))[1])
    cached = tmp_path / "cache_object"
    cached.write_bytes(b"old page")
    page = tmp_path / "page.png"
    os.link(cached, page)
    os.chmod(page, 0o444)  # as DVC protects it
    new = tmp_path / ".page.png.tmp"
    new.write_bytes(b"new page")
    files.replace(new, page)
    assert page.read_bytes() == b"new page" and cached.read_bytes() == b"old page"  # the cache keeps its bytes
    other = tmp_path / "other.png"
    os.link(cached, other)
    os.chmod(other, 0o444)
    files.remove(other)
    assert not other.exists() and cached.read_bytes() == b"old page"

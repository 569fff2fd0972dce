"""The app's folder layout (data/app_folder.py): one place that knows where a page's files are."""

import ast
from pathlib import Path

from qblock.data.app_folder import DOCUMENTS, GROUPS, PAGES, PROPOSALS, AppFolder, page_images

REPO = Path(__file__).resolve().parents[1]


def _touch(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_png_wins_over_jpg_and_pages_are_labeled_unlabeled_or_proposed(tmp_path):
    app = AppFolder(tmp_path)
    for name in ("p1.jpg", "p1.png", "p2.jpeg", "p3.png", "notes.txt"):
        _touch(app.pages_folder("book") / name)
    _touch(app.groups_file("book", "p1"), '{"groups": []}')
    _touch(app.proposal_file("book", "p3"), '{"groups": []}')
    _touch(app.document("other") / "pages" / "q.png")

    assert app.document_names() == ["book", "other"]
    assert {page: path.name for page, path in app.images("book").items()} == {"p1": "p1.png", "p2": "p2.jpeg",
                                                                             "p3": "p3.png"}
    assert app.page_image("book", "p1") == app.pages_folder("book") / "p1.png"
    assert app.page_image("book", "p9") is None
    assert app.labeled("book") == ["p1"]
    assert app.unlabeled("book") == ["p2", "p3"]
    assert app.proposed("book") == ["p3"]
    assert app.groups_file("book", "p1") == tmp_path / "documents" / "book" / "groups" / "p1_groups.json"
    assert app.proposal_file("book", "p3") == tmp_path / "documents" / "book" / "proposals" / "p3_groups.json"
    assert page_images(["a.jpg", "a.png", "b.jpg"]) == {"a": "a.png", "b": "b.jpg"}


def test_an_app_folder_without_documents_has_none():
    app = AppFolder(Path("/nonexistent/qblock"))
    assert app.document_names() == [] and app.images("x") == {} and app.labeled("x") == []


def test_the_layout_is_spelled_only_in_app_folder():
    """No module outside data/app_folder.py joins the app's folder names into a path by hand."""
    names = {DOCUMENTS, PAGES, GROUPS, PROPOSALS}
    found = []
    for path in sorted((REPO / "src" / "qblock").rglob("*.py")):
        if path == REPO / "src" / "qblock" / "data" / "app_folder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                found += [f"{path.relative_to(REPO)}:{node.lineno}" for side in (node.left, node.right)
                          if isinstance(side, ast.Constant) and side.value in names]
    assert found == []

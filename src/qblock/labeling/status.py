"""`qblock status`: labeling progress per document, read straight from the app's folder.

A page is labeled when its groups file exists (an empty `groups` list is a labeled page with
no questions); a page image without one is still to do. Once `qblock propose` has run, the pages
still to do are ranked by how unsure the model was about them (boxes with confidence between 0.2
and 0.8, then the lowest confidence it kept): those are where a person's time teaches it most.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table

from qblock.core.errors import UserError
from qblock.data.app_folder import AppFolder


@dataclass
class DocumentStatus:
    document: str
    pages: list[str] = field(default_factory=list)
    labeled: list[str] = field(default_factory=list)
    questions: int = 0
    unreadable: list[str] = field(default_factory=list)
    unsure: dict[str, tuple[int, float]] = field(default_factory=dict)  # page -> (unsure boxes, lowest confidence)

    @property
    def unlabeled(self) -> list[str]:
        """The pages still to label, the ones the model was least sure about first."""
        done = set(self.labeled)
        todo = [p for p in self.pages if p not in done]
        return sorted(todo, key=lambda p: (p not in self.unsure, -self.unsure.get(p, (0, 1.0))[0],
                                           self.unsure.get(p, (0, 1.0))[1], p))


def _unsure(proposal: Path) -> tuple[int, float] | None:
    try:
        data = json.loads(proposal.read_text(encoding="utf-8"))
        confidences = [float(g["confidence"]) for g in data["groups"]]
        return int(data["unsure_boxes"]), min(confidences, default=1.0)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _question_count(groups_file: Path) -> int | None:
    try:
        groups = json.loads(groups_file.read_text(encoding="utf-8-sig")).get("groups")
    except (OSError, ValueError, AttributeError):
        return None
    return len(groups) if isinstance(groups, list) else None


def collect_status(dataset_root: Path) -> list[DocumentStatus]:
    app = AppFolder(dataset_root)
    if not app.documents.is_dir():
        raise UserError(f"{dataset_root}: no documents/ folder; give the app's dataset_root (the folder that holds "
                        "documents/)")
    result = []
    for document in app.document_names():
        status = DocumentStatus(document)
        status.pages = list(app.images(document))
        for page in app.labeled(document):
            count = _question_count(app.groups_file(document, page))
            if count is None:
                status.unreadable.append(page)
            else:
                status.questions += count
            if page in status.pages:
                status.labeled.append(page)
        for page in app.proposed(document):
            if (found := _unsure(app.proposal_file(document, page))) is not None:
                status.unsure[page] = found
        result.append(status)
    return result


def print_status(console: Console, statuses: list[DocumentStatus], show_unlabeled: int = 5) -> None:
    """One line per document at any width of 80 columns or more: long names and lists are cut with '…'."""
    table = Table(title="Labeling progress", show_footer=True)
    total_pages = sum(len(s.pages) for s in statuses)
    total_labeled = sum(len(s.labeled) for s in statuses)
    bar = 24 if console.width >= 120 else 10
    counts = max(len("labeled"), len(f"{total_labeled}/{total_pages}"))
    fixed = counts + bar + len("questions") + 5 * 3 + 1  # the other columns, their padding and borders
    names = max([len("document"), len(f"{len(statuses)} documents"), *(cell_len(s.document) for s in statuses)])
    document = min(names, max(16, (console.width - fixed) // 3))
    rest = max(12, console.width - fixed - document)
    table.add_column("document", footer=f"{len(statuses)} documents", no_wrap=True, overflow="ellipsis",
                     width=document)
    table.add_column("labeled", justify="right", footer=f"{total_labeled}/{total_pages}", no_wrap=True, width=counts)
    table.add_column("", width=bar, footer=ProgressBar(total=max(total_pages, 1), completed=total_labeled, width=bar))
    table.add_column("questions", justify="right", footer=str(sum(s.questions for s in statuses)), no_wrap=True,
                     width=len("questions"))
    table.add_column("next to label", no_wrap=True, overflow="ellipsis", max_width=rest)
    for s in statuses:
        todo = s.unlabeled
        more = f" (+{len(todo) - show_unlabeled})" if len(todo) > show_unlabeled else ""
        shown = ", ".join(f"{p} ({s.unsure[p][0]} unsure)" if p in s.unsure else p
                          for p in todo[:show_unlabeled]) + more
        table.add_row(s.document, f"{len(s.labeled)}/{len(s.pages)}",
                      ProgressBar(total=max(len(s.pages), 1), completed=len(s.labeled), width=bar),
                      str(s.questions), shown or "[green]done[/]")
    console.print(table)
    for s in statuses:
        if s.unreadable:
            console.print(f"[yellow]warning[/]: {s.document}: unreadable groups file(s) for {', '.join(s.unreadable)} "
                          "(`qblock export` says what is wrong)")
    share = total_labeled / total_pages if total_pages else 0.0
    console.print(f"{total_labeled} of {total_pages} pages labeled ({share:.0%}).")

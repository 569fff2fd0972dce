"""`qblock show`: the latest metrics beside the champion's and the previous run's."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qblock.core import metric_names as names
from qblock.core.errors import UserError
from qblock.history.runs import runs_to_compare
from qblock.model import mlflow_store, run_log
from qblock.stages.evaluate import NO_TEST, print_metrics


def print_comparison(console: Console, metrics: dict, others: list[tuple[str, str, dict[str, float]]]) -> None:
    """The latest metrics beside the champion's and the previous run's, with the differences; the runs'
    names below the table (they are long, and would squeeze the columns)."""
    table = Table(title="latest run against the champion and the previous run")
    table.add_column("metric", no_wrap=True)
    table.add_column("latest", justify="right")
    for label, _, _ in others:
        table.add_column(label, justify="right")
        table.add_column("change", justify="right")
    for name in (*names.TEST_HEADLINE, names.TEST_WORST_DOCUMENT, *names.HEADLINE, names.FALSE_CROPS):
        if name not in metrics:
            continue
        row = [name, f"{metrics[name]:.4f}"]
        for _, _, theirs in others:
            if name in theirs:
                change = metrics[name] - theirs[name]
                better = change > 0 if not name.endswith(names.FALSE_CROPS) else change < 0
                style = "green" if better and abs(change) >= 5e-5 else "red" if abs(change) >= 5e-5 else "dim"
                row += [f"{theirs[name]:.4f}", f"[{style}]{change:+.4f}[/]"]
            else:
                row += ["-", ""]
        table.add_row(*row)
    console.print(table)
    console.print("; ".join(f"{label}: run {name}" for label, name, _ in others))
    console.print("test_: whole documents nothing was chosen on (what a new workbook gets); the rest: val"
                  if names.TEST_PAGES in metrics else f"[yellow]note[/]: {NO_TEST}")


def show_runs(root: Path, console: Console) -> None:
    """`qblock show`: the latest metrics.json beside the champion's and the previous run's metrics."""
    from qblock.config.schema import load_params
    from qblock.core.secrets import redact

    params = load_params(root)
    metrics_file = root / params.paths.metrics_file
    if not metrics_file.is_file():
        raise UserError(f"{metrics_file}: no metrics yet; run `dvc repro`")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    run_file = root / params.paths.model_dir / "run.json"
    run_id = run_log.read_run_file(run_file) if run_file.is_file() else None
    others = runs_to_compare(params.mlflow, run_id)
    if others:
        print_comparison(console, metrics, others)
    else:
        print_metrics(console, metrics, params.paths.eval_dir)
    console.print(f"MLflow store: {redact(mlflow_store.tracking_uri(params.mlflow, root))}")
    console.print("Open the MLflow UI: `qblock ui` (or `make ui`), then http://127.0.0.1:5000")

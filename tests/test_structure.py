"""The layout keeps its promises: each dvc stage depends on exactly the code it runs, and MLflow is
spoken to from the few modules whose job that is."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO

from qblock.core.code_closure import closure, imported_modules

SRC = REPO / "src"
PACKAGE = SRC / "qblock"


def only_a_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) or
               (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id == "__version__" for t in n.targets))
               for n in body)


def stage_deps(stage: str) -> list[Path]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    return [REPO / d for d in spec["deps"] if isinstance(d, str) and d.startswith("src/")]


def covered(path: Path, deps: list[Path]) -> bool:
    return any(path == dep or dep in path.parents for dep in deps)


STAGE_MODULES = {"check_params": "qblock.stages.check_params", "export": "qblock.stages.export",
                 "split": "qblock.stages.split", "validate": "qblock.stages.validate",
                 "train": "qblock.stages.train", "evaluate": "qblock.stages.evaluate"}


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_each_stage_depends_on_all_the_code_it_runs(stage):
    """The stage's import closure (from what `qblock <stage>` runs) is inside its dvc.yaml deps;
    files with no code (a docstring, the version) change no result and need no entry."""
    code = closure(STAGE_MODULES[stage]) | closure("qblock.stages")
    deps = stage_deps(stage)
    uncovered = sorted(str(p.relative_to(REPO)) for p in code if not covered(p, deps) and not only_a_docstring(p))
    assert not uncovered, f"dvc.yaml stage {stage} runs code it does not depend on: {uncovered}"
    unused = [str(d.relative_to(REPO)) for d in deps if not any(covered(p, [d]) for p in code)]
    assert not unused, f"dvc.yaml stage {stage} depends on code it never runs: {unused}"


def test_no_stage_depends_on_the_cli_sync_or_services():
    machine_side = (PACKAGE / "sync", PACKAGE / "services")
    for stage in STAGE_MODULES:
        for path in closure(STAGE_MODULES[stage]) | closure("qblock.stages"):
            assert path != PACKAGE / "cli.py" and not any(f in path.parents for f in machine_side), (stage, path)
        assert not any(covered(PACKAGE / "cli.py", [d]) or d in machine_side for d in stage_deps(stage))


def test_sync_imports_nothing_from_services():
    """services/ (the watcher, the team server, doctor) is built on sync/, never the other way."""
    upward = sorted(f"{path.name} -> {m}" for path in (PACKAGE / "sync").glob("*.py")
                    for m in imported_modules(path, f"qblock.sync.{path.stem}") if m.startswith("qblock.services"))
    assert not upward, upward


def test_only_the_store_the_run_log_and_the_registry_speak_to_mlflow():
    speakers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                speakers.add(path.relative_to(PACKAGE).as_posix())
    # the store, the pipeline's run and the registry, one job each; pyfunc_model.py is the model MLflow
    # itself loads (in any environment), not a caller; history/runs.py reads runs for people (`qblock
    # show`, doctor) and is no stage's code
    assert speakers == {"model/mlflow_store.py", "model/run_log.py", "model/registry.py", "model/pyfunc_model.py",
                        "history/runs.py"}


def test_every_file_in_a_stages_dep_folders_is_code_some_stage_runs():
    """A file no stage imports, in a folder dvc.yaml lists as a stage's dependency, would rerun that
    stage (a 60-epoch training) each time it is edited: it belongs beside the CLI (history/, sync/)."""
    code = set().union(*(closure(module) for module in STAGE_MODULES.values())) | closure("qblock.stages")
    code.add(PACKAGE / "model" / "pyfunc_model.py")  # evaluate logs it by path as the registered model's code
    folders = {d for stage in STAGE_MODULES for d in stage_deps(stage) if d.is_dir()}
    idle = sorted(str(p.relative_to(REPO)) for folder in folders for p in folder.rglob("*.py")
                  if p not in code and not only_a_docstring(p))
    assert not idle, f"in a stage's dependency folders but run by no stage: {idle}"


@pytest.mark.slow
def test_touching_a_module_only_evaluate_imports_reruns_evaluate_only(tmp_path):
    """`dvc status` after an edit: evaluate (which imports worst_pages) changed, train did not."""
    from tests.repos import copy_repo, sh

    only_evaluate = [p for p in closure(STAGE_MODULES["evaluate"])
                     if p not in closure(STAGE_MODULES["train"]) and p.parent != PACKAGE / "stages"]
    assert PACKAGE / "quality" / "worst_pages.py" in only_evaluate
    repo = copy_repo(tmp_path / "repo")
    sh([sys.executable, "-m", "qblock", "demo-data", "data/dataset_root", "--documents", "3", "--pages", "1"], repo)
    sh([sys.executable, "-m", "dvc", "repro", "validate"], repo)
    (repo / "models").mkdir(exist_ok=True)
    for out in ("models/best.pt", "models/run.json"):
        (repo / out).write_text("stand-in\n")
    (repo / "runs" / "train").mkdir(parents=True, exist_ok=True)
    (repo / "runs" / "evaluate").mkdir(parents=True, exist_ok=True)
    (repo / "metrics.json").write_text("{}\n")
    (repo / "plots").mkdir(exist_ok=True)
    (repo / "plots" / "pr_curve.csv").write_text("recall,precision\n")
    sh(["dvc", "commit", "-f", "-q", "train", "evaluate"], repo)  # as if both had run: dvc status is clean
    assert "train" not in sh(["dvc", "status", "train", "evaluate"], repo).stdout

    show = repo / "src" / "qblock" / "history" / "show.py"  # `qblock show`: no stage runs it
    show.write_text(show.read_text() + "\n# touched\n")
    assert yaml.safe_load(sh(["dvc", "status", "--json"], repo).stdout) == {}

    worst = repo / "src" / "qblock" / "quality" / "worst_pages.py"
    worst.write_text(worst.read_text() + "\n# touched\n")
    status = sh(["dvc", "status", "--json"], repo).stdout
    changed = set(yaml.safe_load(status))
    assert "evaluate" in changed and "train" not in changed, status


def test_no_module_imports_itself_back_and_core_reads_no_config():
    """Arrows run one way: no import cycle among qblock's modules (a package's __init__ aside, which
    importing its own modules is for), and core/ (errors, console, notify ...) imports nothing above it."""
    modules = {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in imported_modules(path, name) if m in modules and m != name and
                    not name.startswith(m + ".")} for name, path in modules.items()}
    cycles = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not cycles, cycles[:5]
    upward = sorted(f"{name} -> {m}" for name, deps in graph.items() if name.startswith("qblock.core.")
                    for m in deps if not m.startswith("qblock.core"))
    assert not upward, upward

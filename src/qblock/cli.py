"""The `qblock` command line. Stage commands are what `dvc repro` runs (see dvc.yaml)."""

from __future__ import annotations

import socket
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from qblock.core.console import console
from qblock.core.errors import UserError
from qblock.data.app_folder import AppFolder
from qblock.imports.formats import TOOLS as IMPORT_TOOLS
from qblock.imports.formats import Tool as ImportTool
from qblock.sync.remote import PROBE_TIMEOUT_S

app = typer.Typer(
    help="qblock: labeled workbook pages -> a trained, versioned question-block detector.\n\n"
    "Run the pipeline with `dvc repro`; these commands are its parts and helpers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _run_stage(name: str) -> None:
    from qblock.stages import run_stage

    if name in ("train", "evaluate"):  # the stages that write runs: into this project's folder, wherever it is now
        _follow_moved_store()
    run_stage(name, console)


def _follow_moved_store() -> None:
    from qblock.config.schema import load_params
    from qblock.history.store_location import follow_move
    from qblock.model.mlflow_store import artifact_root

    params = load_params().mlflow
    if old := follow_move(params):
        console.print(f"mlflow: the project moved; its store kept run files in {old}, now in "
                      f"{artifact_root(params)}", highlight=False)


class PageStyle(StrEnum):
    drawn = "drawn"
    typeset = "typeset"


@app.command("demo-data")
def demo_data(
    directory: Annotated[Path, typer.Argument(help="where to write the app-style dataset_root")],
    documents: Annotated[int, typer.Option(min=1, help="number of workbooks")] = 20,
    pages: Annotated[int, typer.Option(min=1, help="pages per workbook")] = 4,
    seed: Annotated[int, typer.Option(help="same seed, same pages")] = 0,
    style: Annotated[PageStyle, typer.Option(
        help="drawn: pages drawn by qblock (fast, no tools); typeset: pages typeset by XeLaTeX (needs TeX Live and "
             "pdftoppm), boxes the tight union of each question's ink")] = PageStyle.drawn,
) -> None:
    """Write a synthetic labeled dataset_root (pages + groups JSON) for demos and tests."""
    if present := AppFolder(directory).document_names():
        raise UserError(f"{AppFolder(directory).documents} already has documents ({len(present)}); choose an empty "
                        "folder")
    if style is PageStyle.typeset:
        from rich.progress import Progress

        from qblock.labeling.typeset_pages import write_typeset_dataset

        with Progress(console=console, transient=True) as bar:  # a workbook takes seconds: show each
            task = bar.add_task("typesetting workbooks", total=documents)
            count = write_typeset_dataset(directory, documents, pages, seed, lambda _: bar.advance(task))
    else:
        from qblock.labeling.demo_data import write_demo_dataset

        count = write_demo_dataset(directory, documents, pages, seed)
    console.print(f"demo-data: {count} pages in {documents} documents under {AppFolder(directory).documents}")


@app.command("params")
def params(
    check: Annotated[bool, typer.Option(
        "--check", help="only check that params.yaml matches conf/ and the labeled pages are here")] = False,
    stamp: Annotated[Path | None, typer.Option(hidden=True, help="with --check: write this file when in sync")] = None,
) -> None:
    """Compose conf/ (Hydra) into params.yaml, or check that they agree (the pipeline's first stage)."""
    root = Path.cwd()
    if check:
        from qblock.stages.check_params import run

        run(root, console, stamp)
    else:
        from qblock.config.compose import write_params

        console.print(f"params: composed conf/ -> {write_params(root).name}")


STAGES = {  # the dvc.yaml stages, each `qblock NAME` (dvc.yaml's cmd)
    "export": "Stage: the app's groups JSON + page images -> a flat YOLO folder.",
    "split": "Stage: assign documents to train, val and test, stable as the collection grows.",
    "validate": "Stage: the gate; corrupt images or bad labels stop the pipeline here.",
    "train": "Stage: train the YOLO detector, logging to MLflow.",
    "evaluate": "Stage: mAP, the crop rate and its threshold on val, then the test split -> metrics.json, MLflow.",
}


def _stage_command(name: str, help_text: str) -> None:
    def command() -> None:
        _run_stage(name)

    command.__doc__ = help_text
    app.command(name)(command)


for _name, _help in STAGES.items():
    _stage_command(_name, _help)


@app.command()
def status(
    dataset_root: Annotated[Path | None, typer.Argument(help="the app's dataset_root [default: the one `publish --app` "
                                                            "remembered, else paths.dataset_root]")] = None,
    unlabeled: Annotated[int, typer.Option(help="unlabeled pages to list per document")] = 5,
    offline: Annotated[bool, typer.Option("--offline", help="do not ask the git origin whether a newer model "
                                                            "is there")] = False,
) -> None:
    """Labeling progress, what to label next, and which model is here (and whether the NAS has a newer one)."""
    from qblock.config.schema import load_params
    from qblock.labeling.status import collect_status, print_status
    from qblock.sync.model_version import describe, model_state

    in_project = (Path.cwd() / "params.yaml").is_file() and (Path.cwd() / ".git").exists()
    if dataset_root is None:  # the project's copy: when missing, say whether to pull it or where it comes from
        from qblock.data.app_dataset import check_pages_present
        from qblock.sync.app_mirror import labeling_root

        project_copy = Path(load_params().paths.dataset_root)
        dataset_root = labeling_root(Path.cwd(), project_copy)  # the app's own folder, when publish --app named it
        if dataset_root == project_copy:
            check_pages_present(Path.cwd(), dataset_root)
    print_status(console, collect_status(dataset_root), unlabeled)
    if not in_project:  # an app folder looked at from elsewhere: no model to speak of
        return
    params = load_params()
    model_file = Path(params.paths.model_dir) / "best.pt"
    for line in describe(model_state(Path.cwd(), model_file, ask_origin=not offline), model_file):
        console.print(escape(line), highlight=False)
    run_file = Path(params.paths.model_dir) / "run.json"
    if model_file.is_file() and run_file.is_file():
        from qblock.history.runs import registered_as
        from qblock.model.run_log import read_run_file

        if said := registered_as(params.mlflow, read_run_file(run_file)):
            console.print(escape(f"model: {said}"), highlight=False)


@app.command()
def propose(
    documents: Annotated[list[str] | None, typer.Argument(help="documents to propose for [default: all]")] = None,
    model: Annotated[str | None, typer.Option(help="a .pt file, a registered version (3), or an MLflow run id "
                                                   "[default: the registry's champion, else models/best.pt]")] = None,
    conf: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="confidence threshold "
                                                                     "[default: the one chosen on val]")] = None,
    accept: Annotated[list[str] | None, typer.Option(help="DOC/PAGE (or DOC): copy reviewed proposals into "
                                                          "groups/, never over a person's file")] = None,
    label_studio: Annotated[Path | None, typer.Option(help="also write the proposals as Label Studio tasks "
                                                           "with pre-annotations to this JSON file")] = None,
    preview: Annotated[str | None, typer.Option(help="DOC: draw its proposals into "
                                                     "documents/DOC/proposals/preview.png")] = None,
    if_newer: Annotated[bool, typer.Option("--if-newer", help="first fetch the newest model from the NAS when the "
                                                              "origin has another one (as pull-model --if-newer)")]
    = False,
) -> None:
    """Cut the app's unlabeled pages into proposed questions (boxes and question images), beside its own files."""
    from qblock.config.schema import load_params
    from qblock.data.problems import write_json
    from qblock.labeling import model_choice
    from qblock.labeling import propose as proposals
    from qblock.sync.app_mirror import labeling_root

    params = load_params()
    dataset_root = labeling_root(Path.cwd(), Path(params.paths.dataset_root))  # the app's own folder when remembered
    if accept or preview:
        for target in accept or []:
            proposals.accept(dataset_root, target, console)
        if preview:
            out = proposals.draw_preview(dataset_root, preview,
                                         AppFolder(dataset_root).proposals_folder(preview) / "preview.png")
            console.print(f"propose: {out}")
        return
    if if_newer:
        from qblock.sync.round_trips import pull_model as fetch

        try:
            fetch(Path.cwd(), Path(params.paths.model_dir) / "best.pt", Path(params.paths.metrics_file), console, True)
        except UserError as exc:  # no NAS in the café: propose with the model that is here
            console.print(f"[yellow]warning[/]: {escape(str(exc))}; proposing with the model already here")
    choice = model_choice.choose_model(model, params, Path.cwd())
    threshold = conf if conf is not None else choice.conf if choice.conf is not None else model_choice.DEFAULT_CONF
    console.print(f"propose: {choice.identity} ({choice.weights}), confidence >= {threshold:g}")
    outcome = proposals.propose(dataset_root, documents, choice, threshold, params, console, label_studio is not None)
    if label_studio is not None:
        write_json(label_studio, outcome.tasks)
        console.print(f"propose: {len(outcome.tasks)} Label Studio task(s) -> {label_studio}")
    console.print(f"propose: {outcome.proposed} page(s) proposed, {outcome.unchanged} unchanged, "
                  f"{len(outcome.unreadable)} unreadable, under documents/*/proposals/")


@app.command()
def show() -> None:
    """Print the latest metrics beside the champion's and the previous run's, and how to open the MLflow UI."""
    from qblock.history.show import show_runs

    show_runs(Path.cwd(), console)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="port to listen on")] = 5000,
    host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 serves the LAN")] = "127.0.0.1",
    auth: Annotated[bool, typer.Option(help="ask for a user and password (MLflow's basic-auth app); the admin "
                                            "password comes from $QBLOCK_UI_PASSWORD or .qblock/machine.yaml")] = False,
    allowed_host: Annotated[list[str] | None, typer.Option(help="another name other machines use for this one "
                                                                "(its own names and private addresses are in)")] = None,
) -> None:
    """Start the MLflow UI on the configured store."""
    from qblock.config.schema import load_params
    from qblock.model.mlflow_store import artifact_root, connect, tracking_uri
    from qblock.services import ui_view
    from qblock.services.team_server import mlflow_server_command
    from qblock.services.ui_auth import auth_environment

    params = load_params()
    _follow_moved_store()
    experiment = connect(params.mlflow)
    page = ui_view.set_up(experiment)  # model training, the runs table with the figures people compare
    command = mlflow_server_command(tracking_uri(params.mlflow), ["--default-artifact-root",
                                                                   artifact_root(params.mlflow)],
                                    host, port, allowed_host or [])
    env = None
    if auth:
        env = auth_environment(Path.cwd())
        command += ["--app-name", "basic-auth"]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    console.print(f"MLflow UI on http://{shown}:{port}/{page} (Ctrl+C stops it)")
    if shown != host:
        console.print(f"serving the LAN: other machines open http://<this machine's address>:{port}")
    if host not in ("127.0.0.1", "localhost", "::1") and not auth:
        console.print("[yellow]warning[/]: no password: anyone who can reach this machine can read, change and "
                      "delete runs and models. Serve it with `qblock ui --auth` (admin password from "
                      "$QBLOCK_UI_PASSWORD)")
    if auth:
        console.print("log in as `admin` with the password from $QBLOCK_UI_PASSWORD (or ui_password in "
                      ".qblock/machine.yaml)")
    raise typer.Exit(subprocess.call(command, env=env))


@app.command()
def server(
    artifacts: Annotated[str | None, typer.Option(help="where runs' files and models go: a folder on the NAS "
                                                       "(Z:\\qblock-mlflow) [default: server_artifacts in "
                                                       ".qblock/machine.yaml]")] = None,
    db: Annotated[str | None, typer.Option(help="the database URI, postgresql://<user>:<password>@<host>/<db> "
                                                "[default: $QBLOCK_SERVER_DB, else server_db in "
                                                ".qblock/machine.yaml]")] = None,
    host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 serves the LAN")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="port to listen on")] = 5000,
    allowed_host: Annotated[list[str] | None, typer.Option(help="another name clients use for this machine "
                                                                "(this machine's own names are in)")] = None,
    auth: Annotated[bool, typer.Option(help="ask for a user and password (as `qblock ui --auth`)")] = False,
    print_only: Annotated[bool, typer.Option("--print", help="print the mlflow server command (password hidden); "
                                                             "start nothing")] = False,
) -> None:
    """The team's MLflow tracking server: runs and registry in PostgreSQL, files on the NAS, served over HTTP.

    Every machine then sets `mlflow.tracking_uri: http://THIS-MACHINE:PORT` in conf/config.yaml.
    """
    from qblock.core.secrets import redact
    from qblock.services.team_server import artifacts_uri, database_uri, server_command
    from qblock.services.ui_auth import auth_environment

    command = server_command(database_uri(db), artifacts_uri(artifacts), host, port, allowed_host or [])
    if auth:
        command += ["--app-name", "basic-auth"]
    shown = " ".join(redact(part) if "://" in part else part for part in command)
    if print_only:
        typer.echo(shown)
        return
    console.print(f"server: {escape(shown)}")
    console.print(f"every machine: `mlflow.tracking_uri: http://{socket.gethostname()}:{port}` in conf/config.yaml, "
                  "then `qblock params`")
    if host not in ("127.0.0.1", "localhost", "::1") and not auth:
        console.print("[yellow]warning[/]: no password: anyone who can reach this machine can read, change and "
                      "delete runs and models. Serve it with --auth (admin password from $QBLOCK_UI_PASSWORD)")
    raise typer.Exit(subprocess.call(command, env=auth_environment(Path.cwd()) if auth else None))


remote_app = typer.Typer(help="The NAS as DVC remote (per machine, in .dvc/config.local).", no_args_is_help=True)
app.add_typer(remote_app, name="remote")


@remote_app.command("set")
def remote_set(
    location: Annotated[str, typer.Argument(help="a mounted folder (Z:\\qblock-store, /mnt/nas/qblock) or ssh://user@nas/path")],
    timeout: Annotated[float, typer.Option(help="seconds the NAS gets to answer")] = PROBE_TIMEOUT_S,
    keyfile: Annotated[Path | None, typer.Option(help="ssh:// only: the private key to log in with")] = None,
) -> None:
    """Make the NAS this machine's default DVC remote, after checking it is reachable and writable."""
    from qblock.sync.remote import set_remote
    from qblock.sync.stream_push import StreamUnavailable, describe

    set_remote(Path.cwd(), location, console, timeout, keyfile)
    try:  # how pushes will go: one stream over ssh, or object by object
        if how := describe(Path.cwd()):
            console.print(f"remote: {how}")
    except StreamUnavailable as exc:
        console.print(f"remote: pushes go object by object (`dvc push`): {exc}")


@remote_app.command("check")
def remote_check() -> None:
    """Check that the NAS remote answers and takes writes."""
    from qblock.sync.remote import require_remote

    console.print(f"remote: {require_remote(Path.cwd())} is reachable and writable")


weights_app = typer.Typer(help="Pretrained weights in weights/ (fetched once, carried by DVC).", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("fetch")
def weights_fetch(
    name: Annotated[str, typer.Argument(help="a model name from ultralytics' release assets, e.g. yolov8m")],
    release: Annotated[str | None, typer.Option(help="the release's description (GitHub API JSON), e.g. of a mirror; "
                                                     "default: ultralytics/assets v8.4.0")] = None,
) -> None:
    """Download NAME.pt once into weights/, check its SHA-256 against the release's, and `dvc add` it.

    Models whose conf/model file says `weights: auto` then start from it (COCO-pretrained) instead of from scratch.
    """
    from qblock.sync.weights import fetch

    fetch(name, Path.cwd(), console, release)


pretrain_app = typer.Typer(help="The base model's recipe: its stages, run by `dvc repro` in pretrain/.",
                           no_args_is_help=True)
app.add_typer(pretrain_app, name="pretrain")


@pretrain_app.command("hilex")
def pretrain_hilex(
    out: Annotated[Path, typer.Option(help="where HiLEx's export goes, pages reshaped")] = Path("data/hilex"),
) -> None:
    """Stage: HiLEx's YOLO export at the recipe's pinned commit, pages stretched back to portrait."""
    from qblock.pretrain.hilex import get
    from qblock.pretrain.recipe import load_recipe

    get(load_recipe().hilex, out, console)


@pretrain_app.command("pages")
def pretrain_pages(
    hilex: Annotated[Path, typer.Option(help="HiLEx's export, from `qblock pretrain hilex`")] = Path("data/hilex"),
) -> None:
    """Stage: HiLEx through `qblock import` (one paper one document, capped) plus demo workbooks."""
    from qblock.config.schema import load_params
    from qblock.pretrain.pages import collect
    from qblock.pretrain.recipe import load_recipe

    collect(hilex, load_params(), load_recipe().pages, console)


@pretrain_app.command("ship")
def pretrain_ship(
    to: Annotated[Path, typer.Option(help="the main project's weights folder")] = Path("../weights"),
) -> None:
    """Copy the recipe's model (as dvc.lock records it) to weights/qblock-base-<model>.pt, with its provenance."""
    from qblock.config.schema import load_params
    from qblock.pretrain.recipe import load_recipe
    from qblock.pretrain.ship import ship

    ship(load_params(), load_recipe(), to, console)


import_app = typer.Typer(help="Bring labels in from Roboflow or Label Studio exports, as pages of the app's folder.",
                        no_args_is_help=True)
app.add_typer(import_app, name="import")
_INTO = typer.Option(help="the document to put every page in [default: from the file names: algebra_p012 -> algebra]")
_DRY_RUN = typer.Option(help="say what would be written; write nothing")
_REPLACE = typer.Option(help="overwrite pages already in the app's folder that differ (a person's labels included)")
_APP = typer.Option(help="the app's dataset_root [default: the one `publish --app` remembered, else "
                         "paths.dataset_root from params.yaml]")
_PER_PAGE = typer.Option("--document-per-page", help="every page a document of its own (photos, frames: pages "
                                                     "that belong to no workbook)")
_KEEP_SPLIT = typer.Option("--keep-split", help="keep each page in the export's own train/valid/test (to compare "
                           "with a table published on that split) instead of qblock's split by document")
_ALLOW_EMPTY = typer.Option(help="let pages with no boxes in the export (no label file, or an empty one) replace "
                                 "pages that have boxes in the app's folder")


def _import(kind: str, path: Path, images: Path | None, into: str | None, dry_run: bool, replace: bool,
            app: Path | None, allow_empty: bool, per_page: bool = False, keep_split: bool = False) -> None:
    from qblock.config.schema import load_params
    from qblock.imports.importer import run_import
    from qblock.sync.app_mirror import labeling_root

    params = load_params()
    target = app or labeling_root(Path.cwd(), Path(params.paths.dataset_root))
    run_import(kind, path, images, target, params.export, into, dry_run, replace, console, allow_empty=allow_empty,
               per_page=per_page, keep_split=keep_split)


def _import_command(tool: ImportTool) -> None:
    """`qblock import TOOL`, one for each row of imports/formats.py's TOOLS."""
    def command(
        path: Path,
        images: Path | None = None,
        into: Annotated[str | None, _INTO] = None,
        dry_run: Annotated[bool, _DRY_RUN] = False,
        replace: Annotated[bool, _REPLACE] = False,
        app: Annotated[Path | None, _APP] = None,
        allow_empty: Annotated[bool, _ALLOW_EMPTY] = False,
        per_page: Annotated[bool, _PER_PAGE] = False,
        keep_split: Annotated[bool, _KEEP_SPLIT] = False,
    ) -> None:
        if images is not None and not tool.images:
            raise UserError(f"--images: a {tool.name} export carries its images; give the export alone")
        _import(tool.name, path, images, into, dry_run, replace, app, allow_empty, per_page, keep_split)

    command.__annotations__ |= {  # the tool's own words (an annotation string cannot see `tool`)
        "path": Annotated[Path, typer.Argument(metavar="EXPORT", help=tool.export)],
        "images": Annotated[Path | None, typer.Option(hidden=not tool.images,
                                                      help="the folder the tasks' images came from (JSON export)")]}
    import_app.command(tool.name, help=tool.summary)(command)


for _tool in IMPORT_TOOLS:
    _import_command(_tool)


@app.command()
def publish(
    app: Annotated[Path | None, typer.Option(help="the app's dataset_root on this machine, if it is not "
                                                  "paths.dataset_root (remembered in .qblock/machine.yaml)")] = None,
) -> None:
    """Laptop: validate the labels, snapshot them, commit, push the data to the NAS, then the commit."""
    from qblock.config.schema import load_params
    from qblock.sync.round_trips import publish as publish_labels

    publish_labels(Path.cwd(), load_params().paths, console, app)


@app.command()
def push() -> None:
    """Push this commit's data to the NAS (over SSH: what it lacks in one stream, then `dvc push` to confirm)."""
    from qblock.sync.remote import require_remote
    from qblock.sync.round_trips import push_data

    require_remote(Path.cwd())
    push_data(Path.cwd(), console)
    console.print("push: done")


@app.command("desktop-run")
def desktop_run() -> None:
    """Desktop: git pull, dvc pull, dvc repro, commit, push the data, then the commit; stops at the first failure."""
    from qblock.config.schema import load_params
    from qblock.sync.round_trips import desktop_run as run_round

    run_round(Path.cwd(), load_params().paths, console)


@app.command()
def gc(
    remote: Annotated[bool, typer.Option("--remote", help="clean the NAS too, not only this machine's cache")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would be deleted; delete nothing")] = False,
) -> None:
    """Free space: delete the DVC objects no commit of the origin, tag, experiment or the work tree needs.

    Fetches the origin first and refuses when it cannot, or while this machine has unpushed commits. Use it instead
    of `dvc gc -c`, which deletes what other machines pushed and this one has not fetched.
    """
    from qblock.sync.cleanup import collect_garbage

    collect_garbage(Path.cwd(), remote, dry_run, console)


@app.command()
def watch(
    every: Annotated[float, typer.Option(min=1, help="seconds between looks at the git origin")] = 300,
    once: Annotated[bool, typer.Option("--once", help="look once (and run the round if one is due), then exit: "
                                                      "0 done or nothing to do, 1 the round failed, 75 the origin "
                                                      "or NAS did not answer")] = False,
    print_task: Annotated[str | None, typer.Option(
        "--print-task", help="print how to start the watcher by itself: windows (a scheduled task), systemd or "
                             "launchd; nothing is installed", show_default=False)] = None,
) -> None:
    """Desktop: train by itself when new labels reach the git origin (desktop-run), and say how it went.

    One round at a time, never twice for a commit, never from a tree with uncommitted changes; an origin or NAS
    that does not answer is retried with backoff; a failed round is reported once. Log: .qblock/watch.log.
    """
    from qblock.services import start_up
    from qblock.services.watch import check_ready
    from qblock.services.watch import watch as run_watch

    root = Path.cwd()
    if print_task is not None:
        if print_task not in start_up.KINDS:
            raise UserError(f"--print-task {print_task}: choose one of {', '.join(start_up.KINDS)}")
        check_ready(root)
        typer.echo(start_up.task_text(print_task, root.resolve(), every), nl=False)
        return
    raise typer.Exit(run_watch(root, every, once))


@app.command()
def doctor(
    deep: Annotated[bool, typer.Option("--deep", help="also read back every NAS object this commit needs and check "
                                                      "its content against its hash (minutes for a big NAS)")] = False,
    all_commits: Annotated[bool, typer.Option("--all-commits", help="with --deep: what every commit needs")] = False,
    repair: Annotated[bool, typer.Option("--repair", help="with --deep: replace bad NAS objects with this machine's "
                                                          "good copies")] = False,
) -> None:
    """Check the NAS, what is not pushed yet, the cache, params, secrets and the watcher; each problem with its fix."""
    from qblock.services.doctor import run_doctor

    if (all_commits or repair) and not deep:
        raise UserError("--all-commits and --repair go with --deep")
    if not run_doctor(Path.cwd(), console, deep, all_commits, repair):
        raise typer.Exit(1)


@app.command("pull-model")
def pull_model(
    if_newer: Annotated[bool, typer.Option("--if-newer", help="only when the origin has another model than this "
                                                              "one (asks git first: cheap to run from a timer)")]
    = False,
) -> None:
    """Laptop: fetch the current model and its metrics only (not the training data)."""
    from qblock.config.schema import load_params
    from qblock.sync.round_trips import pull_model as fetch

    paths = load_params().paths
    model_file = Path(paths.model_dir) / "best.pt"
    if fetch(Path.cwd(), model_file, Path(paths.metrics_file), console, if_newer):
        _export_for_cpu(model_file, asked=False)


def _export_for_cpu(weights: Path, asked: bool) -> None:
    """Make the CPU copy of ``weights`` (`labeling/cpu_model.py`). After pull-model (not ``asked``), a missing
    runtime or a failed export is a warning: the model itself was fetched."""
    from qblock.labeling import cpu_model

    fmt = cpu_model.DEFAULT_FORMAT
    if not asked and not cpu_model.runtime_installed(fmt):
        console.print(f"pull-model: no {fmt} here, so propose will run PyTorch on the CPU "
                      f"(pip install {cpu_model.FORMATS[fmt][0]}, then `qblock export-model`)")
        return
    found = cpu_model.find_copy(Path.cwd(), weights, fmt)
    if found is None:
        try:
            with console.status(f"exporting {weights} to {fmt} ..."):
                found = cpu_model.make_copy(Path.cwd(), weights, fmt)
        except Exception as exc:  # after pull-model fetched the model: the model is here, only the copy is not
            if asked:
                raise
            console.print(f"[yellow]warning[/]: pull-model: no {fmt} copy made ({escape(str(exc))}); propose will "
                          f"run PyTorch on the CPU")
            return
    console.print(f"export-model: {weights} -> {found.path} ({fmt}, {found.imgsz} px); propose uses it on the CPU")


@app.command("export-model")
def export_model(
    model: Annotated[str | None, typer.Option(help="a .pt file, a registered version (3), or an MLflow run id "
                                                   "[default: the registry's champion, else models/best.pt]")] = None,
) -> None:
    """Laptop: a copy of the model compiled for the CPU (OpenVINO); propose then runs it, about twice
    PyTorch's speed for the desktop's model. pull-model makes one itself."""
    from qblock.config.schema import load_params
    from qblock.labeling import model_choice

    choice = model_choice.choose_model(model, load_params(), Path.cwd())
    _export_for_cpu(choice.weights, asked=True)


def main() -> None:
    try:
        app()
    except UserError as exc:
        from qblock.core.secrets import redact

        console.print(f"[red]error[/]: {escape(redact(str(exc)))}")  # a URL in a message never shows its secret
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if "database is locked" not in str(exc):
            raise
        console.print("[red]error[/]: the MLflow store (a SQLite file) is busy: another run was writing it for longer "
                      "than SQLite waits. One SQLite file takes one run at a time; for runs at once (queued "
                      "experiments, two machines) use the team server: `qblock server` (README, MLflow).")
        sys.exit(1)

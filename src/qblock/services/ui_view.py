"""What the MLflow UI shows first: qblock's experiment as model training, its runs table with the
figures a person compares.

MLflow 3 opens an experiment in its GenAI view unless the experiment says it is model training
(the `mlflow.experimentKind` tag its own "experiment type" switch writes), and its runs table
shows Source, Models and Dataset until a person picks columns. A view can be shared by URL: the
experiment tag `mlflow.sharedViewState.<key>` holds the table's state, and
`#/experiments/<id>/runs?viewStateShareKey=<key>` opens it (MLflow's own share button does the
same); `workflowType=machine_learning` in the URL turns the sidebar to model training (its
registry link among it). `qblock ui` writes both tags and prints that URL.
"""

from __future__ import annotations

import json

from qblock.core import metric_names as names

KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "qblock"


def column(kind: str, name: str) -> str:
    """MLflow's key of a runs-table column: ``metrics.`test_crop_rate```."""
    return f"{kind}.`{name}`"


# The headline on the test split (what a new workbook gets), then val's (where the choices were made)
METRIC_COLUMNS = (*names.TEST_HEADLINE, names.CROP_RATE, names.MAP50, names.MAP50_95, names.CONF_THRESHOLD)
COLUMNS = (column("attributes", "Description"), *(column("metrics", m) for m in METRIC_COLUMNS),
           column("attributes", "Dataset"), column("attributes", "Models"))


def view_state() -> dict:
    """The runs table's state as MLflow's UI reads a shared view: columns, newest run first."""
    return {"selectedColumns": list(COLUMNS), "columnOrder": list(COLUMNS), "orderByKey": "attributes.start_time",
            "orderByAsc": False}


def runs_page(experiment_id: str) -> str:
    """The UI's address (after the host) of the experiment's runs in qblock's view."""
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"


def set_up(experiment_id: str) -> str:
    """Mark the experiment as model training and store qblock's runs view in it; the page's address."""
    from qblock.model.mlflow_store import tag_experiment

    tag_experiment(experiment_id, {KIND_TAG: MODEL_TRAINING, VIEW_TAG_PREFIX + VIEW_KEY: json.dumps(view_state())})
    return runs_page(experiment_id)

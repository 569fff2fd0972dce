"""The model registry: every pipeline run's model is registered as `question-block-detector`,
and the `champion` alias moves only to a model that beats the champion on the same val data.

"The same val data" is checked, not assumed: each run is tagged with a hash of its val pages
(list, labels and images). When the champion was measured on other val data (a document was
added, a label fixed), its weights are measured again on today's val pages before comparing.
Each decision and its reason are written on the new model version, on the run, and into the
run's `champion_decision.json`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from qblock.tracking import installed_version

REGISTERED_MODEL = "question-block-detector"
CHAMPION = "champion"


@dataclass
class Decision:
    version: str
    promoted: bool
    reason: str
    metric: str
    score: float
    champion_before: str | None = None
    champion_score: float | None = None


def _pins(*packages: str) -> list[str]:
    """``package==version`` for what is installed here (the bare name otherwise)."""
    return [f"{package}=={v}" if (v := installed_version(package)) else package for package in packages]


def register(model_file: Path, imgsz: int) -> str:
    """Log the weights as a pyfunc model in the active run and register it; return the version."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "image")]),
        outputs=Schema([ColSpec("string", "image"), ColSpec("string", "class"), ColSpec("double", "confidence"),
                        ColSpec("double", "x"), ColSpec("double", "y"), ColSpec("double", "width"),
                        ColSpec("double", "height")]),
        params=ParamSchema([ParamSpec("conf", "double", 0.25), ParamSpec("device", "string", "")]),
    )
    with warnings.catch_warnings():  # no input example (it would load the model at log time), no type hints
        warnings.simplefilter("ignore", UserWarning)
        info = mlflow.pyfunc.log_model(
            name="detector",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"weights": str(model_file)},
            model_config={"imgsz": imgsz},
            signature=signature,
            pip_requirements=_pins("ultralytics", "torch", "torchvision", "pandas", "pillow", "mlflow"),
            registered_model_name=REGISTERED_MODEL,
        )
    return str(info.registered_model_version)


def decide_champion(
    new_version: str, metric: str, score: float, val_hash: str, rescore: Callable[[str], float]
) -> Decision:
    """Move the champion alias to ``new_version`` if it beats the champion on the same val data.

    ``rescore(run_id)`` measures a run's model on today's val pages; it is called only when the
    champion was measured on different val data.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION)
    except MlflowException:
        champion = None
    if champion is None:
        decision = Decision(new_version, True, "no champion yet", metric, score)
    else:
        champion_run = client.get_run(champion.run_id)
        same_val = champion_run.data.tags.get("qblock.val_hash") == val_hash and metric in champion_run.data.metrics
        if same_val:
            champion_score, how = champion_run.data.metrics[metric], f"on the same val data ({val_hash})"
        else:
            champion_score, how = rescore(champion.run_id), f"re-measured on today's val data ({val_hash})"
        promoted = score > champion_score
        verdict = "beats" if promoted else "does not beat"
        reason = (f"{metric} {score:.4f} {verdict} champion v{champion.version}'s {champion_score:.4f}, {how}")
        decision = Decision(new_version, promoted, reason, metric, score, champion.version, champion_score)
    if decision.promoted:
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, new_version)
    verdict = "promoted" if decision.promoted else "not promoted"
    tags = {"champion.decision": verdict, "champion.reason": decision.reason}
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, new_version, key, value)
    mlflow.set_tags(tags)
    mlflow.log_dict(asdict(decision), "champion_decision.json")
    return decision

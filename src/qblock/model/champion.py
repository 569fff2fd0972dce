"""Which registered model is the champion: every pipeline run's model is registered as
`question-block-detector`, and the `champion` alias moves only to a model that beats the
champion on the same val data.

"The same val data" is checked, not assumed: each run is tagged with a hash of its val pages
(list, labels and images). When the champion was measured on other val data (a document was
added, a label fixed), its weights are measured again on today's val pages before comparing.
The decision is pure logic; `registry` reads the champion from and writes the decision to MLflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

REGISTERED_MODEL = "question-block-detector"
CHAMPION = "champion"


@dataclass
class Champion:
    """The current champion as the registry knows it."""

    version: str
    run_id: str
    val_hash: str | None  # the val data it was measured on
    scores: dict[str, float]  # its run's metrics


@dataclass
class Decision:
    version: str
    promoted: bool
    reason: str
    metric: str
    score: float
    champion_before: str | None = None
    champion_score: float | None = None


def decide(new_version: str, metric: str, score: float, val_hash: str, champion: Champion | None,
           rescore: Callable[[str], float]) -> Decision:
    """Does ``new_version`` (``score`` on ``metric``) beat ``champion`` on the same val data?

    ``rescore(run_id)`` measures a run's model on today's val pages; it is called only when the
    champion was measured on different val data.
    """
    if champion is None:
        return Decision(new_version, True, "no champion yet", metric, score)
    if champion.val_hash == val_hash and metric in champion.scores:
        champion_score, how = champion.scores[metric], f"on the same val data ({val_hash})"
    else:
        champion_score, how = rescore(champion.run_id), f"re-measured on today's val data ({val_hash})"
    promoted = score > champion_score
    verdict = "beats" if promoted else "does not beat"
    reason = f"{metric} {score:.4f} {verdict} champion v{champion.version}'s {champion_score:.4f}, {how}"
    return Decision(new_version, promoted, reason, metric, score, champion.version, champion_score)

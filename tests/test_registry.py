"""The champion alias against a real MLflow store and registry (a tiny untrained model)."""

from __future__ import annotations

import pytest


@pytest.fixture
def store(tmp_path, monkeypatch):
    import mlflow

    from qblock.model.yolo_env import prepare_ultralytics

    prepare_ultralytics(tmp_path)
    from ultralytics import YOLO

    weights = tmp_path / "w.pt"
    YOLO("yolov8n.yaml").save(str(weights))
    mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}")
    yield weights
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_the_alias_moves_only_to_a_better_model_on_the_same_val_data(store):
    import mlflow

    from qblock.model import champion, registry

    rescored: list[str] = []

    def run(score: float, val_hash: str, champion_now: float = 0.0):
        with mlflow.start_run() as active:
            mlflow.set_tag("qblock.val_hash", val_hash)
            mlflow.log_metric("mAP50-95", score)
            version = registry.register(store, 256, 0.25)

            def rescore(run_id: str) -> float:
                rescored.append(run_id)
                return champion_now

            decision = champion.decide(version, "mAP50-95", score, val_hash, registry.current_champion(), rescore)
            registry.record_decision(decision, f"mAP50-95 {score:.3f} · v{version}", {"mAP50-95": score})
            return active.info.run_id, decision

    first, decision = run(0.50, "aaa")
    assert decision.promoted and decision.reason == "no champion yet"
    _, decision = run(0.45, "aaa")
    assert not decision.promoted and "does not beat champion v1's 0.5000, on the same val data" in decision.reason
    third, decision = run(0.60, "aaa")
    assert decision.promoted and decision.champion_before is not None
    # new val data: the champion (v3) is measured again before comparing, not trusted from its run
    _, decision = run(0.58, "bbb", champion_now=0.55)
    assert rescored == [third] and decision.promoted and "re-measured on today's val data" in decision.reason

    client = mlflow.MlflowClient()
    alias = client.get_model_version_by_alias(champion.REGISTERED_MODEL, champion.CHAMPION)
    assert str(alias.version) == "4"
    assert client.get_model_version(champion.REGISTERED_MODEL, "2").tags["champion.decision"] == "not promoted"
    second = client.get_model_version(champion.REGISTERED_MODEL, "2")
    assert second.description == "mAP50-95 0.450 · v2" and second.tags["metric.mAP50-95"] == "0.45"


def test_the_same_weights_measured_again_tie_with_their_record_and_do_not_beat_it():
    """evaluate run again on an unchanged model (its code changed, say) registers it again: it must not
    beat itself on a digit that metrics.json and MLflow round off (it did: 0.91675 against 0.9167549)."""
    from types import SimpleNamespace

    from qblock.model import champion
    from qblock.stages.evaluate import box_scores, score_of

    box = SimpleNamespace(map50=0.98474998, map=0.9167549)  # ultralytics' box metrics, unrounded
    recorded = box_scores(box)  # what the first evaluation wrote
    before = champion.Champion("1", "run-1", "aaa", recorded)
    again = score_of(box, [], "mAP50-95")
    decision = champion.decide("2", "mAP50-95", again, "aaa", before, lambda run_id: 0.0)
    assert not decision.promoted and "does not beat champion v1's" in decision.reason
    assert score_of(SimpleNamespace(map50=0.9848, map=0.91690), [], "mAP50-95") > recorded["mAP50-95"]  # better

"""ultralytics as qblock sets it up: quiet about what qblock chose on purpose, loud about the rest."""

from __future__ import annotations

import logging


def test_a_warning_about_qblocks_own_choice_is_dropped_and_others_are_kept(tmp_path, caplog):
    from qblock.model.yolo_env import prepare_ultralytics

    prepare_ultralytics(tmp_path)
    prepare_ultralytics(tmp_path)  # twice in a process: one filter
    logger = logging.getLogger("ultralytics")
    assert sum(f.__name__ == "_not_ours" for f in logger.filters if hasattr(f, "__name__")) == 1
    logger.propagate, was = True, logger.propagate
    try:
        with caplog.at_level(logging.WARNING, logger="ultralytics"):
            logger.warning("cache='ram' may produce non-deterministic training results. Consider cache='disk'")
            logger.warning("NMS time limit 2.800s exceeded")
    finally:
        logger.propagate = was
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].endswith("NMS time limit 2.800s exceeded")

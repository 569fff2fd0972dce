"""ultralytics as qblock sets it up: quiet about what qblock chose on purpose, loud about the rest."""

from __future__ import annotations

import logging


def test_a_warning_about_qblocks_own_choice_is_dropped_and_others_are_kept(tmp_path):
    from qblock.model.yolo_env import prepare_ultralytics

    prepare_ultralytics(tmp_path)
    prepare_ultralytics(tmp_path)  # twice in a process: one filter
    logger = logging.getLogger("ultralytics")
    assert sum(getattr(f, "__name__", "") == "_not_ours" for f in logger.filters) == 1

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("ultralytics", logging.WARNING, __file__, 1, message, None, None)

    assert not logger.filter(record("WARNING cache='ram' may produce non-deterministic training results."))
    assert logger.filter(record("WARNING NMS time limit 2.800s exceeded"))

"""The training log stays readable after a kill: a resumed run's rows never glue onto a torn
line (the report reads log.jsonl strictly, so a damaged middle line would stop it)."""

from __future__ import annotations

import json

from syllabus.store import read_rows
from syllabus.train.logging import TrainLogger


def test_a_resumed_training_log_starts_after_the_torn_line(tmp_path):
    log = tmp_path / "log.jsonl"
    row = {"step": 1, "tokens": 64, "loss": 5.0, "lr": 0.001, "tokens_per_s": 1.0, "mfu": None}
    log.write_text(json.dumps(row) + "\n" + json.dumps({**row, "step": 2})[:30])  # killed mid-write
    logger = TrainLogger(
        tmp_path, is_main=True, show_progress=False, total_steps=4, max_time_s=None
    )
    logger.step(2, 128, 4.5, 0.001, 1.0, None)
    logger.eval(2, 128, 4.7)
    logger.close()
    rows = read_rows(log)
    assert [r["step"] for r in rows] == [1, 2, 2] and rows[2]["val_loss"] == 4.7

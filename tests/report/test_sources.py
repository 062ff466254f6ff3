"""Per-problem scores and loss curves read from a run's files, as both report producers do."""

from __future__ import annotations

import json

import pytest

from syllabus.report.data import CurvePoint
from syllabus.report.sources import loss_curve, per_problem_scores


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_pass_at_1_uses_every_sample_of_a_problem(tmp_path):
    """With n samples a problem's pass@1 is the unbiased estimate c / n over all of them; a
    report that kept the first sample (or the last) would score HumanEval/1 as 1 (or 0)."""
    rows = [
        {"task_id": "HumanEval/1", "sample": 0, "passed": True},
        {"task_id": "HumanEval/1", "sample": 1, "passed": False},
        {"task_id": "HumanEval/1", "sample": 2, "passed": True},
        {"task_id": "HumanEval/1", "sample": 3, "passed": False},
        {"task_id": "HumanEval/10", "sample": 0, "passed": False},
        {"task_id": "HumanEval/10", "sample": 1, "passed": False},
        {"task_id": "HumanEval/10", "sample": 2, "passed": False},
        {"task_id": "HumanEval/10", "sample": 3, "passed": True},
        {"task_id": "HumanEval/2", "sample": 0, "passed": True},
        {"task_id": "HumanEval/2", "sample": 1, "passed": True},
        {"task_id": "HumanEval/2", "sample": 2, "passed": True},
        {"task_id": "HumanEval/2", "sample": 3, "passed": True},
        # Sample 1 of HumanEval/2 redone after a kill: its later row counts, once.
        {"task_id": "HumanEval/2", "sample": 1, "passed": False},
    ]
    scores = per_problem_scores(write_rows(tmp_path / "samples.jsonl", rows))
    assert list(scores) == ["HumanEval/1", "HumanEval/2", "HumanEval/10"]  # natural order
    assert scores == pytest.approx({"HumanEval/1": 0.5, "HumanEval/2": 0.75, "HumanEval/10": 0.25})


def test_one_greedy_sample_is_its_pass_or_fail(tmp_path):
    rows = [{"task_id": f"HumanEval/{i}", "sample": 0, "passed": i % 2 == 0} for i in range(4)]
    scores = per_problem_scores(write_rows(tmp_path / "samples.jsonl", rows))
    assert list(scores.values()) == [1.0, 0.0, 1.0, 0.0]


def test_bits_per_byte_is_one_value_per_problem(tmp_path):
    rows = [
        {"key": "HumanEval/3", "bpb": 2.5},
        {"key": "HumanEval/0", "bpb": 3.0},
        {"key": "HumanEval/0", "bpb": 3.25},  # rescored after a kill: the later value
    ]
    scores = per_problem_scores(write_rows(tmp_path / "samples.jsonl", rows))
    assert scores == {"HumanEval/0": 3.25, "HumanEval/3": 2.5}
    assert per_problem_scores(tmp_path / "missing.jsonl") == {}


def test_loss_curve_keeps_the_last_value_of_a_step_redone_after_a_resume(tmp_path):
    rows = [
        {"step": 1, "tokens": 100, "loss": 4.0},
        {"step": 2, "tokens": 200, "loss": 3.5},
        {"step": 2, "tokens": 200, "val_loss": 3.7},
        {"step": 2, "tokens": 200, "loss": 3.4},  # the resumed run redid step 2
        {"step": 3, "tokens": 300, "loss": 3.0},
    ]
    curve = loss_curve(write_rows(tmp_path / "log.jsonl", rows))
    assert curve == [
        CurvePoint(1, 100, 4.0, None),
        CurvePoint(2, 200, 3.4, 3.7),
        CurvePoint(3, 300, 3.0, None),
    ]

"""What `syllabus fit` learns from a labels file: scores, or expected scores on request."""

from __future__ import annotations

import json

import pytest

from syllabus.curate.labels import examples_from_labels
from syllabus.errors import UserError


def test_labels_give_scores_or_expected_scores_and_count_the_unscored(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [
        {"id": "a", "text": "alpha", "score": 4, "expected": 3.6},
        {"id": "b", "text": "beta", "score": 1, "expected": None},
        {"id": "c", "text": "gamma", "score": None, "expected": None},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    scores = examples_from_labels(path)
    assert scores.texts == ["alpha", "beta"] and scores.labels == [4, 1]
    assert scores.skipped == 1 and scores.source == str(path) and scores.groups is None
    expected = examples_from_labels(path, use_expected=True)
    assert expected.labels == [3.6, 1] and expected.skipped == 1


def test_a_missing_labels_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such labels file"):
        examples_from_labels(tmp_path / "none.jsonl")


def test_a_row_without_a_score_counts_its_expected_score_on_request(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [
        {"text": "a", "score": 3, "expected": 2.6},
        {"text": "b", "score": None, "expected": 1.2},
        {"text": "c", "score": 4, "expected": None},
        {"text": "d", "score": None, "expected": None},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    scores = examples_from_labels(path)
    assert (scores.texts, scores.labels, scores.skipped) == (["a", "c"], [3, 4], 2)
    expected = examples_from_labels(path, use_expected=True)
    assert (expected.texts, expected.labels, expected.skipped) == (
        ["a", "b", "c"],
        [2.6, 1.2, 4],
        1,
    )

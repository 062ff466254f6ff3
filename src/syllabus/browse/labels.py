"""A person's labels: appended on every key press, last label per record wins.

Each row is the record's whole label state at that moment (id, score 0-5 or null, note, the
record's text, and the classifier's and judge's scores when known), so the file is resumable
by reading it back and keeping the last row per id, and `syllabus fit` reads it as it reads a
judge's labels (`text` and `score`) once `latest_per_record` has dropped superseded rows.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from syllabus.curate.labels import latest_per_record
from syllabus.errors import UserError
from syllabus.store import RowAppender, read_rows

SCORES = range(6)


class LabelStore:
    """The labels file of one browse session: read once at start, appended to after."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._appender: RowAppender | None = None
        self.version = 0
        """Counts the labels written this session (caches keyed on it see a new label)."""
        if path.is_dir():
            raise UserError(f"{path}: is a directory; -o takes a JSONL file's path")
        self.latest: dict[str, dict[str, Any]] = {
            row["id"]: row for row in latest_per_record(read_rows(path)) if "id" in row
        }

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self.latest.get(record_id)

    def labelled_ids(self) -> list[str]:
        return [key for key, row in self.latest.items() if row.get("score") is not None]

    def write(
        self,
        record: dict[str, Any],
        *,
        score: int | None,
        note: str,
        collection: str,
        classifier: float | None,
        judge: float | None,
    ) -> dict[str, Any]:
        if score is not None and score not in SCORES:
            raise UserError(f"a label is 0-5, got {score}")
        row = {
            "id": record["id"],
            "score": score,
            "note": note,
            "text": record["text"],
            "kind": record["kind"],
            "source": record["source"],
            "dataset": collection,
            "classifier": classifier,
            "judge": judge,
            "labeller": "person",
            "at": round(time.time(), 3),
        }
        with self._lock:
            if self._appender is None:
                try:
                    self._appender = RowAppender(self.path)
                except OSError as exc:
                    raise UserError(
                        f"{self.path}: cannot write labels ({exc.strerror}); "
                        "pass -o PATH somewhere writable"
                    ) from None
            self._appender.write(row)
            self.latest[row["id"]] = row
            self.version += 1
        return row

    def close(self) -> None:
        with self._lock:
            if self._appender is not None:
                self._appender.close()
                self._appender = None


def judge_scores(paths: list[Path]) -> dict[str, float]:
    """Record id -> the judge's score, from `syllabus annotate` files (the last file wins)."""
    scores: dict[str, float] = {}
    for path in paths:
        for row in read_rows(path):
            value = row.get("expected") if row.get("expected") is not None else row.get("score")
            if row.get("id") and isinstance(value, int | float):
                scores[row["id"]] = float(value)
    return scores


@dataclass
class Agreement:
    """How a person's labels compare with another scorer's on the records both scored."""

    other: str
    pairs: int
    exact: float | None
    """Share where the other's score rounds to the person's label."""
    within_one: float | None
    mean_abs_diff: float | None
    spearman: float | None


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as Spearman's rho wants)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def agreement(person: list[float], other: list[float], name: str) -> Agreement:
    if not person:
        return Agreement(name, 0, None, None, None, None)
    a = np.asarray(person, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    difference = np.abs(a - b)
    rho = None
    if len(a) > 2 and np.ptp(a) > 0 and np.ptp(b) > 0:
        value = float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])
        rho = round(value, 4) if math.isfinite(value) else None
    return Agreement(
        other=name,
        pairs=len(a),
        exact=round(float(np.mean(np.rint(b) == a)), 4),
        within_one=round(float(np.mean(difference <= 1.0)), 4),
        mean_abs_diff=round(float(np.mean(difference)), 4),
        spearman=rho,
    )


def agreements(store: LabelStore, judge: dict[str, float]) -> list[Agreement]:
    """The person against the classifier (score recorded at labelling) and the judge."""
    rows = [row for row in store.latest.values() if row.get("score") is not None]
    with_classifier = [r for r in rows if isinstance(r.get("classifier"), int | float)]
    with_judge = [r for r in rows if r["id"] in judge]
    return [
        agreement(
            [r["score"] for r in with_classifier],
            [r["classifier"] for r in with_classifier],
            "classifier",
        ),
        agreement([r["score"] for r in with_judge], [judge[r["id"]] for r in with_judge], "judge"),
    ]

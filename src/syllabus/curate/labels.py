"""What `syllabus fit` learns from: the scores of an `annotate` labels file, or reference text
(known-good pages against raw files). Either way, texts with a label each, ready for
`quality.fit`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syllabus.curate.quality import read_labels, reference_examples


@dataclass
class FitExamples:
    texts: list[str]
    labels: list[float]
    source: str
    """Where the examples came from (the labels file, or "reference"); saved with the model."""
    groups: list[str] | None = None
    """Reference mode: the file each chunk was cut from, so held-out chunks come from files
    the model never saw."""
    chunk_chars: int | None = None
    """Reference mode: the chunk length, which scoring reuses."""
    skipped: int = 0
    """Label rows without a usable score (unparseable judge answers), left out."""


def latest_per_record(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each record id (in the order records were first labelled); rows
    without an id are kept as they are. A judge's file (one row per id) passes unchanged."""
    latest: dict[str, dict[str, Any]] = {}
    loose: list[dict[str, Any]] = []
    for row in rows:
        key = row.get("id")
        if key is None:
            loose.append(row)
        else:
            latest[key] = row
    return [*latest.values(), *loose]


def examples_from_labels(path: Path | str, *, use_expected: bool = False) -> FitExamples:
    """The scored rows of a labels JSONL. `use_expected` takes the log-prob expected score
    where the judge gave one, and the parsed score elsewhere. A record labelled twice (a
    relabel in `syllabus browse`) counts once, with its last label."""
    rows = latest_per_record(read_labels(path))
    texts: list[str] = []
    labels: list[float] = []
    for row in rows:
        expected = row.get("expected")
        value = expected if use_expected and expected is not None else row.get("score")
        if value is not None:
            texts.append(row["text"])
            labels.append(value)
    return FitExamples(texts, labels, source=str(path), skipped=len(rows) - len(texts))


def examples_from_reference(
    positive: Path | str | None = None,
    negative: Path | str | None = None,
    *,
    per_class: int = 1500,
) -> FitExamples:
    """Chunks of known-good pages (1) against raw files (0): by default python3-doc's HTML
    docs against the standard library's source."""
    examples = reference_examples(positive, negative, per_class=per_class)
    return FitExamples(
        texts=examples.texts,
        labels=list(examples.labels),
        source="reference",
        groups=examples.groups,
        chunk_chars=examples.chunk_chars,
    )

"""A run's funnel, read from the stats.json files its stages wrote.

- curate (and every single-step verb, and `syllabus run`'s raw/filtered/quality stages):
  `steps` -> records in and out and drops by reason per step. Where curation kept its rejected
  records (`keep_rejected`, OUT/rejected/ with meta `dropped_by` and `drop_reason`), each
  reason links to that collection filtered by step and reason.
- synth: per generator, attempts, accepted records and rejected answers by reason (rejected
  answers are not records: their few kept raw samples are shown), and the near-duplicates
  removed, each linked to its record in OUT/generated/ and the kept member it duplicated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from syllabus.browse.source import Target


@dataclass
class Drop:
    reason: str
    count: int
    collection: int | None = None
    """Index of the collection holding these dropped records (None: not kept)."""
    step: str = ""


@dataclass
class FunnelStep:
    name: str
    records_in: int | None
    records_out: int | None
    drops: list[Drop] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    """A few rejected raw answers (synth), shown as text."""


@dataclass
class Funnel:
    name: str
    """The stats file's folder, relative to the opened root."""
    kind: str
    """curate | synth"""
    steps: list[FunnelStep]
    score_histogram: dict[str, int] = field(default_factory=dict)
    score_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    """synth: near-duplicates removed, with collection indexes to open them."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _collection_index(target: Target, directory: Path) -> int | None:
    name = str(directory.relative_to(target.root)) if directory != target.root else "."
    for index, collection in enumerate(target.collections):
        if collection.name == name:
            return index
    return None


def _curate(target: Target, path: Path, stats: dict[str, Any], name: str) -> Funnel:
    rejected = _collection_index(target, path.parent / "rejected")
    steps = []
    for step, numbers in stats["steps"].items():
        drops = [
            Drop(reason, count, rejected, step)
            for reason, count in sorted(
                (numbers.get("dropped") or {}).items(), key=lambda item: -item[1]
            )
        ]
        steps.append(FunnelStep(step, numbers.get("records_in"), numbers.get("records_out"), drops))
    return Funnel(
        name,
        "curate",
        steps,
        score_histogram=stats.get("score_histogram") or {},
        score_examples=stats.get("score_examples") or {},
    )


def _synth(target: Target, path: Path, stats: dict[str, Any], name: str) -> Funnel:
    steps = []
    for generator, numbers in stats["generators"].items():
        drops = [Drop(reason, count) for reason, count in (numbers.get("rejected") or {}).items()]
        steps.append(
            FunnelStep(
                f"{generator}: attempts -> accepted",
                numbers.get("attempts"),
                numbers.get("records"),
                drops,
                samples=list(numbers.get("examples_rejected") or []),
            )
        )
    duplicates = stats.get("duplicates") or {}
    removed = duplicates.get("near_duplicates_removed") or 0
    generated = _collection_index(target, path.parent / "generated")
    kept = _collection_index(target, path.parent)
    accepted = sum(step.records_out or 0 for step in steps)
    steps.append(
        FunnelStep(
            "near-duplicates",
            accepted,
            stats.get("records"),
            [Drop("near-duplicate of an earlier record", removed, generated)] if removed else [],
        )
    )
    links = [
        {**entry, "collection": generated, "kept_collection": kept}
        for entry in duplicates.get("removed") or []
    ]
    return Funnel(name, "synth", steps, duplicates=links)


def funnels(target: Target) -> list[Funnel]:
    """Every stats.json under the opened path that is a curate or synth funnel."""
    found = []
    for path in target.stats:
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        name = str(path.parent.relative_to(target.root)) if path.parent != target.root else "."
        if isinstance(stats.get("steps"), dict):
            found.append(_curate(target, path, stats, name))
        elif isinstance(stats.get("generators"), dict):
            found.append(_synth(target, path, stats, name))
    return found

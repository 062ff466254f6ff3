"""The headline figures of a synth run's stats.json, typed: what `syllabus synth` prints and a
library user checks (acceptance per generator, duplicates, diversity, coverage, teacher calls).
stats.json itself (synth/stats.py) holds more: rejection examples, openings, costs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from syllabus.errors import UserError


@dataclass(frozen=True)
class GeneratorSummary:
    jobs: int
    records: int
    attempts: int
    acceptance_rate: float
    """Records kept per attempt."""
    rejected: dict[str, int]
    """Rejection reason -> count, most common first."""


@dataclass(frozen=True)
class SynthSummary:
    generators: dict[str, GeneratorSummary]
    near_duplicates_removed: int
    distinct_2: float
    """Distinct word bigrams over all bigrams of the kept records."""
    topics_covered: int
    topic_leaves: int
    teacher_calls: int
    served_from_cache: int
    stopped: str
    """Why generation stopped before the plan's end (a token budget), or ""."""

    @classmethod
    def from_stats(cls, stats: dict) -> SynthSummary:
        return cls(
            generators={
                name: GeneratorSummary(
                    jobs=g["jobs"],
                    records=g["records"],
                    attempts=g["attempts"],
                    acceptance_rate=g["acceptance_rate"],
                    rejected=dict(g["rejected"]),
                )
                for name, g in stats["generators"].items()
            },
            near_duplicates_removed=stats["duplicates"]["near_duplicates_removed"],
            distinct_2=stats["distinct_n"]["2"],
            topics_covered=stats["topic_coverage"]["covered"],
            topic_leaves=stats["topic_coverage"]["leaves"],
            teacher_calls=stats["teacher"]["calls"],
            served_from_cache=stats["teacher"]["served_from_cache"],
            stopped=stats.get("stopped") or "",
        )

    @classmethod
    def read(cls, out: Path | str) -> SynthSummary:
        path = Path(out) / "stats.json"
        if not path.exists():
            raise UserError(f"{out}: no stats.json (is this a `syllabus synth` output?)")
        return cls.from_stats(json.loads(path.read_text()))

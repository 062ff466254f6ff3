"""What a dataset holds: counts and token estimates by kind, and samples."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from syllabus.store.dataset import estimate_tokens
from syllabus.store.jsonl import read_records
from syllabus.types import Record


@dataclass
class KindStats:
    records: int = 0
    chars: int = 0
    tokens: int = 0


@dataclass
class Summary:
    records: int = 0
    by_kind: dict[str, KindStats] = field(default_factory=dict)
    samples: list[Record] = field(default_factory=list)


def summarize(path: Path, *, samples: int = 3, seed: int = 0) -> Summary:
    """One streaming pass; samples are a reservoir sample, so any size of dataset fits."""
    path = Path(path)
    records = read_records(path)
    summary = Summary()
    rng = random.Random(seed)
    for record in records:
        summary.records += 1
        stats = summary.by_kind.setdefault(record.kind, KindStats())
        stats.records += 1
        stats.chars += len(record.text)
        stats.tokens += estimate_tokens(record.text)
        if len(summary.samples) < samples:
            summary.samples.append(record)
        else:
            slot = rng.randrange(summary.records)
            if slot < samples:
                summary.samples[slot] = record
    return summary

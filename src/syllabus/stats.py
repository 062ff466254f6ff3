"""What a step did to the records that passed through it: one `StepStats` for every stage.

Curation steps, synth generators and fine-tuning's data collection all count the same things
the same way: records (and estimated tokens) in and out, drops by reason, a few messages naming
the worst inputs, and the time spent. Stats of one step from many tasks merge by name
(datatrove's shape), so a sharded step reports once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from syllabus.store.dataset import estimate_tokens
from syllabus.types import Record


@dataclass
class StepStats:
    """Records and tokens in and out of one step, drops by reason, and a few messages."""

    name: str
    records_in: int = 0
    records_out: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    bytes_in: int = 0
    dropped: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    MAX_MESSAGES: ClassVar[int] = 20

    def saw(self, record: Record) -> None:
        self.records_in += 1
        self.tokens_in += estimate_tokens(record.text)
        self.bytes_in += len(record.text.encode("utf-8", "surrogatepass"))

    def kept(self, record: Record) -> None:
        self.records_out += 1
        self.tokens_out += estimate_tokens(record.text)

    def drop(self, reason: str, message: str | None = None) -> None:
        self.dropped[reason] += 1
        if message and len(self.messages) < self.MAX_MESSAGES:
            self.messages.append(message)

    @property
    def records_dropped(self) -> int:
        return sum(self.dropped.values())

    def merge(self, other: StepStats) -> StepStats:
        self.records_in += other.records_in
        self.records_out += other.records_out
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.bytes_in += other.bytes_in
        self.dropped.update(other.dropped)
        room = self.MAX_MESSAGES - len(self.messages)
        self.messages.extend(other.messages[: max(0, room)])
        self.wall_time_s += other.wall_time_s
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "records_in": self.records_in,
            "records_out": self.records_out,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "bytes_in": self.bytes_in,
            "dropped": dict(sorted(self.dropped.items())),
            "messages": self.messages,
            "wall_time_s": round(self.wall_time_s, 3),
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> StepStats:
        return cls(
            name=name,
            records_in=data["records_in"],
            records_out=data["records_out"],
            tokens_in=data["tokens_in"],
            tokens_out=data["tokens_out"],
            bytes_in=data.get("bytes_in", 0),
            dropped=Counter(data["dropped"]),
            messages=list(data.get("messages", [])),
            wall_time_s=data.get("wall_time_s", 0.0),
        )


def merge_by_name(parts: list[tuple[str, dict[str, Any]]]) -> dict[str, StepStats]:
    """Merge (name, stats JSON) pairs from many tasks into one `StepStats` per name, in the
    order the names first appear."""
    merged: dict[str, StepStats] = {}
    for name, data in parts:
        merged.setdefault(name, StepStats(name)).merge(StepStats.from_json(name, data))
    return merged

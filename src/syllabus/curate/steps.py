"""The step shape every curation step shares, and where rejected records go.

A step is a generator over an iterator of records, `run(data, rank, world_size)`, that yields
the records it keeps and counts the ones it drops by reason in its `StepStats` (datatrove's
`PipelineStep`). Most steps only write `keep(record)`: None keeps the record; a reason, or a
`Drop` carrying meta for the rejected record, drops it. Work that needs every task's records at
once (clustering near duplicates) is a `Barrier`: the executor runs it once, between the step
groups before and after it. Steps are plain objects built from the config, so the same steps run
in this process, in worker processes or on Ray.

While records are curated they carry their input position in `meta[SEQ]`; the output follows
it (or the curriculum, ties broken by it), so the result does not depend on the executor or the
number of tasks. It is taken off before a record is written out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from syllabus.stats import StepStats
from syllabus.store.dataset import SCHEMA
from syllabus.types import Record

__all__ = ["SEQ", "Barrier", "Drop", "RecordFile", "Step", "StepStats", "read_record_file"]

SEQ = "_curate_seq"
"""meta key of a record's input position while it is being curated."""

WORK_SCHEMA = pa.schema([("seq", pa.int64()), *SCHEMA])


@dataclass
class Drop:
    """Why a step drops a record, and what the rejected record's meta should say about it."""

    reason: str
    """Counted in the step's stats and written as meta["drop_reason"]."""
    meta: dict[str, Any] = field(default_factory=dict)
    """More meta for the rejected record: duplicate_of, contamination."""


class Step:
    """Base step: subclasses write `keep(record) -> None | reason | Drop` or override `run`."""

    name = "step"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).name
        self.stats = StepStats(self.name)
        self.rejects: RecordFile | None = None
        """Where dropped records go when the recipe keeps them (set by the executor)."""

    def keep(self, record: Record) -> str | Drop | None:
        """None to keep the record, or why it is dropped."""
        return None

    def run(self, data: Iterable[Record], rank: int = 0, world_size: int = 1) -> Iterator[Record]:
        for record in data:
            start = time.perf_counter()
            self.stats.saw(record)
            verdict = self.keep(record)
            self.stats.wall_time_s += time.perf_counter() - start
            if verdict is None:
                self.stats.kept(record)
                yield record
            else:
                self.drop(record, verdict)

    def __call__(
        self, data: Iterable[Record], rank: int = 0, world_size: int = 1
    ) -> Iterator[Record]:
        return self.run(data, rank, world_size)

    def drop(self, record: Record, verdict: str | Drop) -> None:
        """Count a dropped record by reason, and keep it if the recipe asks."""
        drop = verdict if isinstance(verdict, Drop) else Drop(verdict)
        self.stats.drop(drop.reason)
        if self.rejects is not None:
            meta = {**record.meta, "dropped_by": self.name, "drop_reason": drop.reason}
            self.rejects.add(record.model_copy(update={"meta": {**meta, **drop.meta}}))

    def outputs(self) -> dict[str, Any]:
        """What this task found beyond its stats, for `finish` (JSON, merged over tasks)."""
        return {}

    def finish(self, outputs: list[dict[str, Any]], reports: Path) -> Finished:
        """Once, after every task: write reports from the tasks' `outputs`."""
        return Finished()


@dataclass
class Finished:
    """What a step leaves once every task is done."""

    reports: dict[str, Path] = field(default_factory=dict)
    """Report files written under OUT/reports."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Entries for the top level of stats.json (e.g. the score histogram)."""


class Barrier:
    """Work over every task's records at once, run here between two step groups (for example:
    clustering near duplicates from every task's signatures). Its stats merge with the stats of
    the steps of the same name."""

    name = "barrier"

    def __init__(self, name: str | None = None) -> None:
        self.name = name or type(self).name
        self.stats = StepStats(self.name)

    def run(self, world_size: int) -> dict[str, Any]:
        """Do the global work; returns the JSON reports to write as reports/<key>.json."""
        raise NotImplementedError


class RecordFile:
    """One task's records with their input position, as Parquet (a step group's output, or its
    rejected records)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        self.writer: pq.ParquetWriter | None = None

    def add(self, record: Record) -> None:
        self.rows.append({"seq": record.meta[SEQ], **record.to_row()})
        if len(self.rows) >= 2048:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, WORK_SCHEMA)
        self.writer.write_table(pa.Table.from_pylist(self.rows, schema=WORK_SCHEMA))
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.writer is None:
            pq.write_table(WORK_SCHEMA.empty_table(), self.path)
        else:
            self.writer.close()


def read_record_file(path: Path) -> Iterator[Record]:
    """The records a `RecordFile` holds, in the order they were written."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            row.pop("seq")
            yield Record.from_row(row)

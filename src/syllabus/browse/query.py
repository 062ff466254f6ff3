"""Filters and full-text search over a collection, one unit (row group) at a time.

Every filter is an Arrow compute kernel over a whole unit: equality on kind, substrings on
source and generator, the meta fields (quality score, drop reason, step, near-duplicate cluster)
read out of the meta JSON text with a regular expression (the store writes it with
`json.dumps(sort_keys=True)`, so `"key": value` is how every field appears), and the text
search last, on the rows the cheaper filters left. A page scans from a cursor (the position of
the next row to look at) until it has `limit` matches, so page N costs what it reads, and the
next page carries on where this one stopped. Counting all matches is a separate full scan.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from syllabus.browse.source import Collection, read_unit

SCORE_FIELD = "quality_score"
"""The meta field curation's quality step writes (curate/quality.py, QualityFilter)."""

SNIPPET_CHARS = 240

SMALL_COLUMNS = ("id", "kind", "source", "meta", "generator")
"""Read for every unit a page looks at; `text` only when the query searches it."""


@dataclass(frozen=True)
class RecordQuery:
    """What the page asks for; empty fields do not filter."""

    text: str = ""
    kind: str = ""
    source: str = ""
    generator: str = ""
    score_min: float | None = None
    score_max: float | None = None
    """Exclusive upper bound, so buckets [b, b+1) tile the 0-5 scale."""
    reason: str = ""
    step: str = ""
    cluster: str = ""
    """A kept record's id: that record and every record marked `duplicate_of` it."""
    record_id: str = ""
    labelled: str = ""
    """"yes" or "no": whether the person labelled the record."""


@dataclass
class RecordRow:
    """One line of the record list."""

    position: int
    id: str
    kind: str
    source: str
    generator: str
    score: float | None
    drop_reason: str | None
    dropped_by: str | None
    duplicate_of: str | None
    snippet: str
    chars: int


@dataclass
class Page:
    rows: list[RecordRow]
    next_cursor: int | None
    """Where the next page starts; None at the end of the collection."""
    scanned: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [asdict(row) for row in self.rows],
            "next_cursor": self.next_cursor,
            "scanned": self.scanned,
            "seconds": round(self.seconds, 4),
        }


def meta_number(meta: pa.Array, name: str) -> pa.Array:
    """A numeric meta field as float64 (null where absent)."""
    pattern = f'"{name}": (?P<v>-?[0-9][0-9.eE+-]*)'
    extracted = pc.extract_regex(meta, pattern)
    return pc.cast(pc.struct_field(extracted, "v"), pa.float64(), safe=False)


def _meta_equals(meta: pa.Array, name: str, value: str) -> pa.Array:
    needle = f'"{name}": {json.dumps(value, ensure_ascii=False)}'
    return pc.match_substring(meta, needle)


def _mask(table: pa.Table, query: RecordQuery, labelled_ids: pa.Array | None) -> pa.Array | None:
    """The cheap filters (everything but the text search) as one boolean mask, or None."""
    masks = []
    if query.kind:
        masks.append(pc.equal(table["kind"], query.kind))
    if query.record_id:
        masks.append(pc.equal(table["id"], query.record_id))
    if query.source:
        masks.append(pc.match_substring(table["source"], query.source, ignore_case=True))
    if query.generator:
        masks.append(pc.match_substring(table["generator"], query.generator, ignore_case=True))
    if query.reason:
        masks.append(_meta_equals(table["meta"], "drop_reason", query.reason))
    if query.step:
        masks.append(_meta_equals(table["meta"], "dropped_by", query.step))
    if query.cluster:
        masks.append(
            pc.or_(
                pc.equal(table["id"], query.cluster),
                _meta_equals(table["meta"], "duplicate_of", query.cluster),
            )
        )
    if query.score_min is not None or query.score_max is not None:
        score = meta_number(table["meta"], SCORE_FIELD)
        if query.score_min is not None:
            masks.append(pc.greater_equal(score, query.score_min))
        if query.score_max is not None:
            masks.append(pc.less(score, query.score_max))
    if query.labelled in {"yes", "no"} and labelled_ids is not None:
        inside = pc.is_in(table["id"], value_set=labelled_ids)
        masks.append(inside if query.labelled == "yes" else pc.invert(inside))
    if not masks:
        return None
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.and_(mask, other)
    return pc.fill_null(mask, False)


def _matches(
    table: pa.Table, query: RecordQuery, labelled_ids: pa.Array | None
) -> tuple[pa.Table, np.ndarray]:
    """The matching rows of a unit's slice and their row numbers within the slice."""
    numbers = np.arange(table.num_rows)
    mask = _mask(table, query, labelled_ids)
    if mask is not None:
        keep = mask.to_numpy(zero_copy_only=False)
        table, numbers = table.filter(mask), numbers[keep]
    if query.text and table.num_rows:
        # Last and only on what is left: the substring search is the costly kernel.
        found = pc.match_substring(table["text"], query.text, ignore_case=True)
        found = pc.fill_null(found, False)
        table, numbers = table.filter(found), numbers[found.to_numpy(zero_copy_only=False)]
    return table, numbers


READ_AHEAD = 2
"""Units read in background threads while the current one is filtered: Parquet decoding and
Arrow kernels release the GIL, so reading overlaps searching."""


def _scan(
    collection: Collection, cursor: int, columns: tuple[str, ...]
) -> Iterator[tuple[int, int, pa.Table]]:
    """(unit index, position of the slice's first row, slice) for every unit from `cursor` on."""
    if cursor >= collection.rows:
        return
    queue = iter(range(collection.unit_at(cursor), len(collection.units)))
    pool = ThreadPoolExecutor(READ_AHEAD)
    pending: deque = deque()

    def submit(count: int) -> None:
        for index in itertools.islice(queue, count):
            pending.append((index, pool.submit(read_unit, collection.units[index], columns)))

    try:
        submit(READ_AHEAD)
        while pending:
            index, future = pending.popleft()
            submit(1)
            unit = collection.units[index]
            skip = max(0, cursor - unit.first_row)
            yield index, unit.first_row + skip, future.result().slice(skip)
    finally:
        # A page that filled up stops here: do not wait for units it will not look at.
        pool.shutdown(wait=False, cancel_futures=True)


def _indices(values: np.ndarray) -> pa.Array:
    """An int64 Arrow array over the numpy buffer, without pa.array()'s Python conversion."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _snippet(text: str, needle: str) -> str:
    if needle:
        at = text.lower().find(needle.lower())
        if at > SNIPPET_CHARS // 3:
            start = at - SNIPPET_CHARS // 3
            return "…" + text[start : start + SNIPPET_CHARS]
    return text[:SNIPPET_CHARS]


def _row(position: int, values: dict[str, Any], needle: str) -> RecordRow:
    try:
        meta = json.loads(values["meta"]) if values["meta"] else {}
    except ValueError:
        meta = {}
    score = meta.get(SCORE_FIELD)
    text = values["text"] or ""
    return RecordRow(
        position=position,
        id=values["id"] or "",
        kind=values["kind"] or "",
        source=values["source"] or "",
        generator=values["generator"] or "",
        score=float(score) if isinstance(score, int | float) and math.isfinite(score) else None,
        drop_reason=meta.get("drop_reason"),
        dropped_by=meta.get("dropped_by"),
        duplicate_of=meta.get("duplicate_of"),
        snippet=_snippet(text, needle),
        chars=len(text),
    )


def page(
    collection: Collection,
    query: RecordQuery,
    cursor: int = 0,
    limit: int = 50,
    labelled_ids: pa.Array | None = None,
) -> Page:
    """Up to `limit` matching rows from `cursor` on."""
    start = time.perf_counter()
    rows: list[RecordRow] = []
    scanned = 0
    next_cursor: int | None = None
    # The text is the big column: read for every unit only when searched, else only for the
    # units that hold rows of this page.
    columns = SMALL_COLUMNS + (("text",) if query.text else ())
    for index, first, table in _scan(collection, cursor, columns):
        scanned += table.num_rows
        matched, numbers = _matches(table, query, labelled_ids)
        room = limit - len(rows)
        if matched.num_rows > room:
            matched, numbers = matched.slice(0, room), numbers[:room]
        if matched.num_rows and "text" not in matched.column_names:
            texts = read_unit(collection.units[index], ("text",)).column("text")
            offset = first - collection.units[index].first_row
            wanted = _indices(numbers + offset)
            matched = matched.append_column("text", texts.take(wanted))
        for number, values in zip(numbers.tolist(), matched.to_pylist(), strict=True):
            rows.append(_row(first + number, values, query.text))
        if len(rows) >= limit:
            after = first + int(numbers[-1]) + 1
            next_cursor = after if after < collection.rows else None
            break
    return Page(rows, next_cursor, scanned, time.perf_counter() - start)


def count(collection: Collection, query: RecordQuery, labelled_ids: pa.Array | None = None) -> int:
    """How many records match (a full scan of the columns the query reads)."""
    if query == RecordQuery():
        return collection.rows
    columns = SMALL_COLUMNS + (("text",) if query.text else ())
    total = 0
    for _, _, table in _scan(collection, 0, columns):
        total += _matches(table, query, labelled_ids)[0].num_rows
    return total


@dataclass
class Histogram:
    """Records per score bucket [b, b+1) on the 0-5 scale, with the first few of each."""

    buckets: dict[int, int]
    examples: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    unscored: int = 0


def score_histogram(collection: Collection, examples_per_bucket: int = 3) -> Histogram:
    buckets = {bucket: 0 for bucket in range(6)}
    examples: dict[int, list[dict[str, Any]]] = {bucket: [] for bucket in range(6)}
    unscored = 0
    for _, first, table in _scan(collection, 0, ("id", "meta")):
        score = meta_number(table["meta"], SCORE_FIELD)
        values = score.to_numpy(zero_copy_only=False)
        present = ~np.isnan(values)
        unscored += int((~present).sum())
        bucket = np.clip(np.floor(values[present]), 0, 5).astype(int)
        for b, n in zip(*np.unique(bucket, return_counts=True), strict=True):
            buckets[int(b)] += int(n)
        positions = np.flatnonzero(present)
        for b in range(6):
            room = examples_per_bucket - len(examples[b])
            if room > 0:
                for number in positions[bucket == b][:room].tolist():
                    examples[b].append({"position": first + number, "score": float(values[number])})
    return Histogram(buckets, {b: e for b, e in examples.items() if e}, unscored)

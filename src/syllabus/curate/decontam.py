"""Benchmark decontamination by word n-gram overlap (13-grams by default, as Phi-1 used).

Benchmark items (HumanEval's prompt plus canonical solution, and each line of any benchmark
JSONL) are cut into word n-grams of normalised text (the same words as the shingles of
`dedup`). A record that shares at least one n-gram with an item is removed, and the report
names the benchmark, the item, the matched words and their character span in the record. Items
shorter than n words cannot be checked at this n and are counted in the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from syllabus.common.benchmarks import load_problems
from syllabus.common.neardup import combine_ngrams, word_spans
from syllabus.curate.config import DecontamConfig
from syllabus.curate.steps import Drop, Finished, Step
from syllabus.errors import UserError
from syllabus.types import Record

ID_FIELDS = ("task_id", "id", "question_id", "problem_id", "name")


@dataclass
class BenchmarkItem:
    benchmark: str
    item_id: str
    text: str


def ngrams(text: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """n-gram hashes of `text` with the start and end byte of each n-gram, and the bytes."""
    data = text.encode("utf-8", "surrogatepass")
    hashes, starts, ends = word_spans(data.lower())
    if len(hashes) < n:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=np.uint64), empty, empty, data
    return combine_ngrams(hashes, n), starts[: len(hashes) - n + 1], ends[n - 1 :], data


def humaneval_items() -> list[BenchmarkItem]:
    return [
        BenchmarkItem("humaneval", p.task_id, p.prompt + p.canonical_solution)
        for p in load_problems()
    ]


def jsonl_items(path: Path | str) -> list[BenchmarkItem]:
    """Each line of a benchmark JSONL: its string fields (except ids) are the item's text."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read benchmark ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: benchmark is not UTF-8") from None
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: invalid JSON in benchmark: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{number}: expected a JSON object per line")
        item_id = next((str(obj[k]) for k in ID_FIELDS if k in obj), f"line {number}")
        text = "\n".join(
            value for key, value in obj.items() if isinstance(value, str) and key not in ID_FIELDS
        )
        items.append(BenchmarkItem(path.stem, item_id, text))
    return items


@dataclass
class Hit:
    record_id: str
    source: str
    benchmark: str
    item_id: str
    span: tuple[int, int]
    """Characters [start, end) of the record's first matching n-gram run."""
    matched: str
    ngrams: int

    def to_json(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "source": self.source,
            "benchmark": self.benchmark,
            "item_id": self.item_id,
            "span": list(self.span),
            "matched": self.matched,
            "matching_ngrams": self.ngrams,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hit:
        return cls(
            data["record_id"],
            data["source"],
            data["benchmark"],
            data["item_id"],
            tuple(data["span"]),
            data["matched"],
            data["matching_ngrams"],
        )


class NgramIndex:
    """n-gram hashes of benchmark items -> the items they come from."""

    def __init__(self, items: Iterable[BenchmarkItem], n: int = 13):
        self.n = n
        self.items: list[BenchmarkItem] = []
        self.too_short: dict[str, int] = {}
        hashes, owners = [], []
        for item in items:
            grams, *_ = ngrams(item.text, n)
            if grams.size == 0:
                self.too_short[item.benchmark] = self.too_short.get(item.benchmark, 0) + 1
                continue
            grams = np.unique(grams)
            hashes.append(grams)
            owners.append(np.full(grams.size, len(self.items), dtype=np.int64))
            self.items.append(item)
        if hashes:
            all_hashes, all_owners = np.concatenate(hashes), np.concatenate(owners)
            order = np.argsort(all_hashes, kind="stable")
            self.hashes, self.owners = all_hashes[order], all_owners[order]
        else:
            self.hashes, self.owners = np.zeros(0, np.uint64), np.zeros(0, np.int64)

    def benchmarks(self) -> list[str]:
        return sorted({item.benchmark for item in self.items} | set(self.too_short))

    def match(self, record: Record) -> list[Hit]:
        """One hit per benchmark item the record shares an n-gram with."""
        if self.hashes.size == 0:
            return []
        grams, starts, ends, data = ngrams(record.text, self.n)
        if grams.size == 0:
            return []
        at = np.searchsorted(self.hashes, grams)
        found = self.hashes[np.minimum(at, self.hashes.size - 1)] == grams
        if not found.any():
            return []
        hits: dict[int, list[int]] = {}
        for position in np.flatnonzero(found).tolist():
            at = np.searchsorted(self.hashes, grams[position])
            while at < self.hashes.size and self.hashes[at] == grams[position]:
                hits.setdefault(int(self.owners[at]), []).append(position)
                at += 1
        result = []
        for owner, positions in sorted(hits.items()):
            # The first run of consecutive matching n-grams gives the span.
            first = last = positions[0]
            for position in positions[1:]:
                if position != last + 1:
                    break
                last = position
            start_byte, end_byte = int(starts[first]), int(ends[last])
            start = len(data[:start_byte].decode("utf-8", "surrogatepass"))
            matched = data[start_byte:end_byte].decode("utf-8", "surrogatepass")
            item = self.items[owner]
            result.append(
                Hit(
                    record.id,
                    record.source,
                    item.benchmark,
                    item.item_id,
                    (start, start + len(matched)),
                    matched,
                    len(positions),
                )
            )
        return result


def build_index(config: DecontamConfig) -> NgramIndex:
    items: list[BenchmarkItem] = []
    if config.humaneval:
        items.extend(humaneval_items())
    for path in config.benchmarks:
        items.extend(jsonl_items(path))
    return NgramIndex(items, config.ngram)


class Decontaminate(Step):
    """Drops records that share an n-gram with a benchmark item; keeps the hits for the report.

    A rejected record's meta["contamination"] names the first item it matched: benchmark, item
    id, n-gram length and the [start, end) characters of the matched span in its text."""

    name = "decontam"

    def __init__(
        self, config: DecontamConfig, index: NgramIndex | None = None, name: str | None = None
    ):
        super().__init__(name)
        self.config = config
        self._index = index
        self.hits: list[Hit] = []

    @property
    def index(self) -> NgramIndex:
        # Built on first use: a task that runs other step groups never needs it.
        if self._index is None:
            self._index = build_index(self.config)
        return self._index

    def keep(self, record: Record) -> Drop | None:
        hits = self.index.match(record)
        if not hits:
            return None
        self.hits.extend(hits)
        first = hits[0]
        contamination = {
            "benchmark": first.benchmark,
            "item": first.item_id,
            "ngram": self.index.n,
            "start": first.span[0],
            "end": first.span[1],
        }
        return Drop(f"contaminated: {first.benchmark}", {"contamination": contamination})

    def outputs(self) -> dict[str, Any]:
        return {"hits": [hit.to_json() for hit in self.hits]}

    def finish(self, outputs: list[dict[str, Any]], reports: Path) -> Finished:
        hits = [Hit.from_json(hit) for part in outputs for hit in part.get("hits", [])]
        hits.sort(key=lambda h: (h.benchmark, h.item_id, h.source, h.record_id))
        written = write_reports(hits, self.index, reports)
        return Finished(reports={f"decontam-{name}": path for name, path in written.items()})


def write_reports(hits: list[Hit], index: NgramIndex, out: Path) -> dict[str, Path]:
    """One JSON report per benchmark: every removed record with its matching items and spans."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for benchmark in index.benchmarks():
        mine = [hit.to_json() for hit in hits if hit.benchmark == benchmark]
        report = {
            "benchmark": benchmark,
            "ngram": index.n,
            "items": sum(item.benchmark == benchmark for item in index.items),
            "items_too_short": index.too_short.get(benchmark, 0),
            "removed_records": len({hit["record_id"] for hit in mine}),
            "hits": mine,
        }
        path = out / f"decontam-{benchmark}.json"
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        paths[benchmark] = path
    return paths

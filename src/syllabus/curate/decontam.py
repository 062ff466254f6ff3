"""Benchmark decontamination by word n-gram overlap (13-grams by default, as Phi-1 used).

Benchmark items (HumanEval's prompt plus canonical solution, and each line of any benchmark
JSONL) are cut into word n-grams of normalised text (the same words as the shingles of
`dedup`). A record that shares at least one n-gram with an item is removed, and the report
names the benchmark, the item, the matched words and their character span in the record. Items
shorter than n words cannot be checked at this n and are counted in the report.

An n-gram that a large share of one benchmark's items hold (`template_share`, at least
`template_min_items` items) is that benchmark's template: the worked examples every few-shot
prompt starts with, an instruction, boilerplate. Training data written for the same task shares
it without holding any item, so an item is matched only by the n-grams of its own words (those
touching no template n-gram); a copy of an item is still caught by them. An item whose own
words hold no run of n cannot be checked at this n, like an item shorter than n words. The
report counts the template n-grams and shows the passages they cover.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from syllabus.common.benchmarks import load_problems
from syllabus.common.neardup import combine_ngrams, word_spans
from syllabus.curate.config import TEMPLATE_MIN_ITEMS, TEMPLATE_SHARE, DecontamConfig
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


@dataclass
class Template:
    """What one benchmark's items share: n-grams ignored when matching, with a few passages."""

    benchmark: str
    ngrams: int = 0
    """Distinct n-grams held by more than `share` of the items (and by at least min_items)."""
    items_holding: int = 0
    """Items holding at least one template n-gram."""
    items_content_too_short: int = 0
    """Items whose own words (outside the template) hold no run of n: they cannot be checked."""
    passages: list[dict[str, Any]] = field(default_factory=list)
    """A few template passages: {"text", "items": the most items any of its n-grams is in}."""

    def to_json(self, share: float, min_items: int) -> dict[str, Any]:
        return {
            "share": share,
            "min_items": min_items,
            "ngrams_ignored": self.ngrams,
            "items_holding": self.items_holding,
            "items_content_too_short": self.items_content_too_short,
            "passages": self.passages,
        }


MAX_PASSAGES = 5
MAX_PASSAGE_CHARS = 600


def content_ngrams(grams: np.ndarray, is_template: np.ndarray, n: int) -> np.ndarray:
    """The n-grams (at their positions) that touch no word of a template n-gram.

    An n-gram reaching into the template holds only a few of the item's own words: the first
    words of any answer to the same prompt would match it, so it is no evidence either."""
    # Word w is template when a template n-gram starts in [w - n + 1, w]; n-gram p covers words
    # p .. p + n - 1, so it touches the template when one starts in [p - n + 1, p + n - 1].
    starts = np.concatenate([[0], np.cumsum(is_template)])
    low = np.maximum(np.arange(grams.size) - n + 1, 0)
    high = np.minimum(np.arange(grams.size) + n, grams.size)
    return grams[starts[high] - starts[low] == 0]


class NgramIndex:
    """n-gram hashes of benchmark items -> the items they come from, less each benchmark's
    template (see the module's docstring)."""

    def __init__(
        self,
        items: Iterable[BenchmarkItem],
        n: int = 13,
        template_share: float = TEMPLATE_SHARE,
        template_min_items: int = TEMPLATE_MIN_ITEMS,
    ):
        self.n = n
        self.template_share = template_share
        self.template_min_items = template_min_items
        self.items: list[BenchmarkItem] = []
        self.too_short: dict[str, int] = {}
        self.templates: dict[str, Template] = {}
        checked: dict[str, list[tuple[BenchmarkItem, np.ndarray]]] = {}
        for item in items:
            grams, *_ = ngrams(item.text, n)
            if grams.size == 0:
                self.too_short[item.benchmark] = self.too_short.get(item.benchmark, 0) + 1
                continue
            checked.setdefault(item.benchmark, []).append((item, grams))
        hashes, owners = [], []
        for benchmark, held in checked.items():
            template_hashes = self._find_template(benchmark, held)
            template = self.templates[benchmark]
            for item, grams in held:
                if template_hashes.size:
                    is_template = np.isin(grams, template_hashes)
                    if is_template.any():
                        template.items_holding += 1
                        grams = content_ngrams(grams, is_template, n)
                        if grams.size == 0:
                            template.items_content_too_short += 1
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

    def _find_template(
        self, benchmark: str, held: list[tuple[BenchmarkItem, np.ndarray]]
    ) -> np.ndarray:
        """The sorted hashes held by more than template_share of the items (and by at least
        template_min_items); records them, with a few passages, in self.templates."""
        unique, counts = np.unique(
            np.concatenate([np.unique(grams) for _, grams in held]), return_counts=True
        )
        is_template = (counts > self.template_share * len(held)) & (
            counts >= self.template_min_items
        )
        template = Template(benchmark, ngrams=int(is_template.sum()))
        self.templates[benchmark] = template
        template_hashes = unique[is_template]
        if template_hashes.size:
            shared_by = dict(
                zip(template_hashes.tolist(), counts[is_template].tolist(), strict=True)
            )
            template.passages = _passages([item for item, _ in held], self.n, shared_by)
        return template_hashes

    def benchmarks(self) -> list[str]:
        return sorted(
            {item.benchmark for item in self.items} | set(self.too_short) | set(self.templates)
        )

    def template(self, benchmark: str) -> Template:
        """The benchmark's template (none found: 0 n-grams)."""
        return self.templates.get(benchmark, Template(benchmark))

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
    return index_for(items, config)


def index_for(items: Iterable[BenchmarkItem], config: DecontamConfig) -> NgramIndex:
    return NgramIndex(items, config.ngram, config.template_share, config.template_min_items)


def _passages(items: list[BenchmarkItem], n: int, shared_by: dict[int, int]) -> list[dict]:
    """Runs of consecutive template n-grams in the items' text, first seen first, until every
    template n-gram is shown or MAX_PASSAGES are; the text cut at MAX_PASSAGE_CHARS."""
    passages: list[dict[str, Any]] = []
    seen_text: set[str] = set()
    unshown = set(shared_by)
    for item in items:
        grams, starts, ends, data = ngrams(item.text, n)
        runs: list[list[int]] = []
        for position, gram in enumerate(grams.tolist()):
            if gram not in shared_by:
                continue
            if runs and runs[-1][-1] == position - 1:
                runs[-1].append(position)
            else:
                runs.append([position])
        for run in runs:
            run_hashes = {int(grams[p]) for p in run}
            if not run_hashes & unshown:
                continue
            unshown -= run_hashes
            text = data[int(starts[run[0]]) : int(ends[run[-1]])].decode("utf-8", "surrogatepass")
            if text in seen_text:
                continue
            seen_text.add(text)
            if len(text) > MAX_PASSAGE_CHARS:
                text = text[:MAX_PASSAGE_CHARS] + " …"
            passages.append({"text": text, "items": max(shared_by[h] for h in run_hashes)})
            if len(passages) == MAX_PASSAGES:
                return passages
        if not unshown:
            break
    return passages


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
            "template": index.template(benchmark).to_json(
                index.template_share, index.template_min_items
            ),
            "hits": mine,
        }
        path = out / f"decontam-{benchmark}.json"
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
        paths[benchmark] = path
    return paths

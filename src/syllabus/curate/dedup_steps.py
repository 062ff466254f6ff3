"""Deduplication as steps: signatures per task, one global clustering, drops per task.

The three share a folder and a name, so their stats merge into one "dedup" line (datatrove's
MinHash stages in the same shape):
1. `DedupSignatures` (per task, at the end of a step group): exact keys of the normalised text,
   shingles and MinHash signatures of the records passing by, saved to `rank-NNNNN.npz`;
2. `FindDuplicates` (the barrier): exact and near-duplicate clusters over every task's
   signatures (candidates from LSH, verified by exact Jaccard); the first record of a cluster
   in input order is kept; writes `removed.json` and returns the dedup report;
3. `DropDuplicates` (per task, first of the next group): drops the records `removed.json`
   names, each rejected record saying which record it duplicates (meta["duplicate_of"]).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from syllabus.common.neardup import (
    bands_rows,
    candidate_pairs,
    cluster_pairs,
    exact_key,
    shingle_batch,
    signatures,
    verify_pairs,
)
from syllabus.curate.config import DedupConfig
from syllabus.curate.steps import SEQ, Barrier, Drop, Step
from syllabus.types import Record

BATCH = 64
"""Texts shingled and signed together (numpy over a batch is what makes it fast)."""


def _rank_file(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank:05d}.npz"


class DedupSignatures(Step):
    """Per task: exact keys, shingles and MinHash signatures of every record passing by. Only
    its time counts in the stats: `DropDuplicates` counts the records, once."""

    name = "dedup"

    def __init__(self, config: DedupConfig, folder: Path, name: str | None = None):
        super().__init__(name)
        self.config = config
        self.folder = folder

    def run(self, data: Iterable[Record], rank: int = 0, world_size: int = 1) -> Iterator[Record]:
        config = self.config
        seqs: list[int] = []
        keys: list[str] = []
        ids: list[str] = []
        sources: list[str] = []
        lengths: list[int] = []
        sigs: list[np.ndarray] = []
        flats: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        pending: list[str] = []

        def sign() -> None:
            flat, offsets = shingle_batch(pending, config.shingle_size)
            if config.near:
                sigs.append(signatures(flat, offsets, config.num_perm, config.seed))
            flats.append(flat)
            counts.append(np.diff(offsets))
            pending.clear()

        for record in data:
            start = time.perf_counter()
            seqs.append(record.meta[SEQ])
            ids.append(record.id)
            sources.append(record.source)
            keys.append(exact_key(record.text) if config.exact else record.id)
            lengths.append(len(record.text))
            pending.append(record.text)
            if len(pending) >= BATCH:
                sign()
            self.stats.wall_time_s += time.perf_counter() - start
            yield record
        start = time.perf_counter()
        if pending:
            sign()
        self.folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            _rank_file(self.folder, rank),
            seq=np.array(seqs, dtype=np.int64),
            keys=np.array(keys, dtype="U40"),
            ids=np.array(ids, dtype="U40"),
            sources=np.array(sources, dtype=str),
            signatures=(
                np.concatenate(sigs) if sigs else np.zeros((0, config.num_perm), np.uint32)
            ),
            shingles=np.concatenate(flats) if flats else np.zeros(0, np.uint64),
            counts=np.concatenate(counts) if counts else np.zeros(0, np.int64),
            lengths=np.array(lengths, dtype=np.int64),
        )
        self.stats.wall_time_s += time.perf_counter() - start


class FindDuplicates(Barrier):
    """Exact and near-duplicate clusters over every task's signatures; the first record of a
    cluster (input order) is kept, the others are listed in `removed.json` with the kept id."""

    name = "dedup"

    def __init__(self, config: DedupConfig, folder: Path, name: str | None = None):
        super().__init__(name)
        self.config = config
        self.folder = folder

    def run(self, world_size: int) -> dict[str, Any]:
        start = time.perf_counter()
        removed, report = self.find(world_size)
        (self.folder / "removed.json").write_text(json.dumps(removed))
        self.stats.wall_time_s += time.perf_counter() - start
        return {self.name: report}

    def find(self, world_size: int) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
        """({seq: {reason, duplicate_of}} of the records to drop, the dedup report)."""
        parts = [np.load(_rank_file(self.folder, rank)) for rank in range(world_size)]
        seq = np.concatenate([p["seq"] for p in parts])
        order = np.argsort(seq, kind="stable")
        seq = seq[order]
        keys = np.concatenate([p["keys"] for p in parts])[order]
        ids = np.concatenate([p["ids"] for p in parts])[order]
        sources = (
            np.concatenate([p["sources"] for p in parts])[order] if len(seq) else np.array([], str)
        )
        counts = np.concatenate([p["counts"] for p in parts])
        flat = np.concatenate([p["shingles"] for p in parts])
        offsets = np.concatenate(([0], np.cumsum(counts)))
        counts, starts = counts[order], offsets[:-1][order]
        removed: dict[str, dict[str, str]] = {}
        report: dict[str, Any] = {"records_in": int(len(seq))}

        def who(i: int) -> dict[str, Any]:
            return {"id": str(ids[i]), "source": str(sources[i])}

        def remove(i: int, kept: int, reason: str) -> None:
            removed[str(int(seq[i]))] = {"reason": reason, "duplicate_of": str(ids[kept])}

        config = self.config
        first: dict[str, int] = {}
        exact_clusters: dict[int, list[int]] = {}
        if config.exact:
            for i, key in enumerate(keys.tolist()):
                if key in first:
                    remove(i, first[key], "exact duplicate")
                    exact_clusters.setdefault(first[key], []).append(i)
                else:
                    first[key] = i
        report["exact"] = {
            "removed": sum(len(v) for v in exact_clusters.values()),
            "clusters": [
                {"kept": who(k), "removed": [who(i) for i in members]}
                for k, members in sorted(exact_clusters.items())
            ],
        }
        if config.near and len(seq):
            matrix = np.concatenate([p["signatures"] for p in parts])[order]
            bands, rows = (
                (config.bands, config.rows)
                if config.bands and config.rows
                else bands_rows(config.threshold, config.num_perm)
            )
            active = (counts > 0) & np.array([str(int(s)) not in removed for s in seq.tolist()])
            candidates = candidate_pairs(matrix, bands, rows, active)
            needed = {i for pair in candidates for i in pair}
            sets = {i: np.unique(flat[starts[i] : starts[i] + counts[i]]) for i in needed}
            verified = verify_pairs(candidates, sets, config.threshold)
            clusters = cluster_pairs(verified)
            similarity = {(i, j): s for i, j, s in verified}
            near_clusters = []
            for members in clusters:
                kept = members[0]
                for i in members[1:]:
                    remove(i, kept, "near duplicate")
                near_clusters.append(
                    {
                        "kept": who(kept),
                        "removed": [
                            {
                                **who(i),
                                "jaccard_to_kept": round(similarity[(kept, i)], 4)
                                if (kept, i) in similarity
                                else None,
                            }
                            for i in members[1:]
                        ],
                    }
                )
            report["near"] = {
                "threshold": config.threshold,
                "num_perm": config.num_perm,
                "shingle_size": config.shingle_size,
                "bands": bands,
                "rows": rows,
                "candidate_pairs": len(candidates),
                "verified_pairs": len(verified),
                "removed": sum(len(c) - 1 for c in clusters),
                "clusters": near_clusters,
            }
        return removed, report


class DropDuplicates(Step):
    """Per task: drops the records `FindDuplicates` listed, each naming the record it
    duplicates."""

    name = "dedup"

    def __init__(self, folder: Path, name: str | None = None):
        super().__init__(name)
        self.folder = folder
        self._removed: dict[str, dict[str, str]] | None = None

    def keep(self, record: Record) -> Drop | None:
        if self._removed is None:
            self._removed = json.loads((self.folder / "removed.json").read_text())
        entry = self._removed.get(str(record.meta[SEQ]))
        if entry is None:
            return None
        return Drop(entry["reason"], {"duplicate_of": entry["duplicate_of"]})

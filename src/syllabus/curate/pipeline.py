"""`syllabus curate`: sources -> filters -> dedup -> decontam -> quality -> curriculum -> dataset.

Three phases, the first and last sharded over tasks by rank (local processes or Ray):
1. each task reads its share of the sources (item i goes to task i % tasks), filters, and writes
   the kept records plus exact-dedup keys, MinHash signatures and shingles to a work folder;
2. here, exact and near-duplicate clusters are found over all tasks' signatures (candidates
   from LSH, verified by exact Jaccard); the first record of a cluster (input order) is kept;
3. each task drops its duplicates, decontaminates and scores its records;
then the records are put in curriculum order and written as a Syllabus dataset, with
stats.json (records and tokens in/out per step, drops by reason, score histogram and examples),
reports/dedup.json, reports/decontam-<benchmark>.json and manifest.json.

Every record carries its input position (`seq`), and the output follows it (or the curriculum
order, ties broken by it), so the result does not depend on the executor or the number of tasks.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syllabus.curate.config import CurateConfig
from syllabus.curate.steps import StepStats
from syllabus.store.dataset import SCHEMA
from syllabus.types import Record

WORK_SCHEMA = pa.schema([("seq", pa.int64()), *SCHEMA])
BATCH = 64


@dataclass
class CurateResult:
    out: Path
    records: int
    steps: list[StepStats]
    reports: dict[str, Path] = field(default_factory=dict)
    histogram: dict[int, int] = field(default_factory=dict)
    wall_time_s: float = 0.0

    @property
    def stats_path(self) -> Path:
        return self.out / "stats.json"


class _RowWriter:
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []
        self.writer: pq.ParquetWriter | None = None

    def add(self, seq: int, record: Record) -> None:
        self.rows.append({"seq": seq, **record.to_row()})
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


def _read_rows(path: Path):
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            seq = row.pop("seq")
            yield seq, Record.from_row(row)


def _task_dir(work: Path, phase: str, rank: int) -> Path:
    path = work / phase / f"rank-{rank:05d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_and_filter(rank: int, world: int, *, config_json: str, work: str) -> dict[str, Any]:
    """Phase 1 for one task: read its share, filter, and compute dedup keys and signatures."""
    from syllabus.curate.dedup import exact_key, shingle_batch, signatures
    from syllabus.curate.filters import HeuristicFilter
    from syllabus.curate.sources import iter_source

    config = CurateConfig.model_validate_json(config_json)
    folder = _task_dir(Path(work), "read", rank)
    if (folder / "done.json").exists():
        return json.loads((folder / "done.json").read_text())
    read = StepStats("read")
    filters = HeuristicFilter(config.filters)
    dedup_stats = StepStats("signatures")
    writer = _RowWriter(folder / "records.parquet")
    seqs: list[int] = []
    keys: list[str] = []
    ids: list[str] = []
    sources: list[str] = []
    sigs: list[np.ndarray] = []
    flats: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    pending: list[str] = []
    lengths: list[int] = []

    def sign() -> None:
        start = time.perf_counter()
        flat, offsets = shingle_batch(pending, config.dedup.shingle_size)
        if config.dedup.near:
            sigs.append(signatures(flat, offsets, config.dedup.num_perm, config.dedup.seed))
        flats.append(flat)
        counts.append(np.diff(offsets))
        dedup_stats.wall_time_s += time.perf_counter() - start
        pending.clear()

    for number, source in enumerate(config.sources):
        start = time.perf_counter()
        items = iter_source(source, number, rank, world, read)
        while True:
            try:
                seq, record = next(items)
            except StopIteration:
                break
            read.saw(record)
            read.kept(record)
            read.wall_time_s += time.perf_counter() - start
            kept = next(iter(filters.run([record])), None)
            if kept is not None:
                start_sig = time.perf_counter()
                writer.add(seq, record)
                seqs.append(seq)
                ids.append(record.id)
                sources.append(record.source)
                keys.append(exact_key(record.text) if config.dedup.exact else record.id)
                dedup_stats.bytes_in += len(record.text.encode("utf-8", "surrogatepass"))
                lengths.append(len(record.text))
                dedup_stats.wall_time_s += time.perf_counter() - start_sig
                pending.append(record.text)
                if len(pending) >= BATCH:
                    sign()
            start = time.perf_counter()
    if pending:
        sign()
    writer.close()
    num_perm = config.dedup.num_perm
    np.savez(
        folder / "signatures.npz",
        seq=np.array(seqs, dtype=np.int64),
        keys=np.array(keys, dtype="U40"),
        ids=np.array(ids, dtype="U40"),
        sources=np.array(sources, dtype=str),
        signatures=np.concatenate(sigs) if sigs else np.zeros((0, num_perm), np.uint32),
        shingles=np.concatenate(flats) if flats else np.zeros(0, np.uint64),
        counts=np.concatenate(counts) if counts else np.zeros(0, np.int64),
        lengths=np.array(lengths, dtype=np.int64),
    )
    result = {
        "read": read.to_json(),
        "filters": filters.stats.to_json(),
        "signatures": dedup_stats.to_json(),
    }
    (folder / "done.json").write_text(json.dumps(result))
    return result


def find_duplicates(
    work: Path, world: int, config: CurateConfig
) -> tuple[dict[int, str], dict, StepStats]:
    """Phase 2: {seq: reason} of records to drop, the dedup report and the step's stats."""
    from syllabus.curate.dedup import bands_rows, candidate_pairs, cluster_pairs, verify_pairs

    start = time.perf_counter()
    parts = [np.load(work / "read" / f"rank-{r:05d}" / "signatures.npz") for r in range(world)]
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
    tokens = (np.concatenate([p["lengths"] for p in parts])[order] + 3) // 4
    stats = StepStats("dedup")
    stats.records_in = len(seq)
    removed: dict[int, str] = {}
    report: dict[str, Any] = {"records_in": int(len(seq))}

    def who(i: int) -> dict[str, Any]:
        return {"id": str(ids[i]), "source": str(sources[i])}

    first: dict[str, int] = {}
    exact_clusters: dict[int, list[int]] = {}
    if config.dedup.exact:
        for i, key in enumerate(keys.tolist()):
            if key in first:
                removed[int(seq[i])] = "exact duplicate"
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
    if config.dedup.near and len(seq):
        matrix = np.concatenate([p["signatures"] for p in parts])[order]
        d = config.dedup
        bands, rows = (
            (d.bands, d.rows) if d.bands and d.rows else bands_rows(d.threshold, d.num_perm)
        )
        active = (counts > 0) & np.array([int(s) not in removed for s in seq.tolist()])
        candidates = candidate_pairs(matrix, bands, rows, active)
        needed = {i for pair in candidates for i in pair}
        sets = {i: np.unique(flat[starts[i] : starts[i] + counts[i]]) for i in needed}
        verified = verify_pairs(candidates, sets, d.threshold)
        clusters = cluster_pairs(verified)
        similarity = {(i, j): s for i, j, s in verified}
        near_clusters = []
        for members in clusters:
            kept = members[0]
            for i in members[1:]:
                removed[int(seq[i])] = "near duplicate"
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
            "threshold": d.threshold,
            "num_perm": d.num_perm,
            "shingle_size": d.shingle_size,
            "bands": bands,
            "rows": rows,
            "candidate_pairs": len(candidates),
            "verified_pairs": len(verified),
            "removed": sum(len(c) - 1 for c in clusters),
            "clusters": near_clusters,
        }
    for reason in removed.values():
        stats.dropped[reason] += 1
    stats.records_out = stats.records_in - len(removed)
    stats.tokens_in = int(tokens.sum())
    dropped = np.array([int(s) in removed for s in seq.tolist()], dtype=bool)
    stats.tokens_out = int(tokens[~dropped].sum()) if len(seq) else 0
    stats.wall_time_s = time.perf_counter() - start
    return removed, report, stats


def decontaminate_and_score(
    rank: int, world: int, *, config_json: str, work: str
) -> dict[str, Any]:
    """Phase 3 for one task: drop duplicates, decontaminate, score."""
    from syllabus.curate.decontam import Decontaminate
    from syllabus.curate.quality import QualityFilter

    config = CurateConfig.model_validate_json(config_json)
    work_path = Path(work)
    folder = _task_dir(work_path, "final", rank)
    if (folder / "done.json").exists():
        return json.loads((folder / "done.json").read_text())
    removed = set(json.loads((work_path / "removed.json").read_text()))
    seqs: dict[str, int] = {}

    def records():
        for seq, record in _read_rows(work_path / "read" / f"rank-{rank:05d}" / "records.parquet"):
            if seq in removed:
                continue
            seqs[record.id] = seq
            yield record

    stream = records()
    decontam = Decontaminate(config.decontam) if config.decontam.enabled else None
    if decontam is not None:
        stream = decontam.run(stream)
    quality = (
        QualityFilter(config.quality.model, config.quality.threshold)
        if config.quality.model
        else None
    )
    if quality is not None:
        stream = quality.run(stream)
    writer = _RowWriter(folder / "records.parquet")
    for record in stream:
        writer.add(seqs[record.id], record)
    writer.close()
    result: dict[str, Any] = {"steps": {}}
    if decontam is not None:
        result["steps"]["decontam"] = decontam.stats.to_json()
        result["hits"] = [hit.to_json() for hit in decontam.hits]
    if quality is not None:
        result["steps"]["quality"] = quality.stats.to_json()
        result["histogram"] = quality.histogram
        result["examples"] = quality.examples
    (folder / "done.json").write_text(json.dumps(result))
    return result


def curate(
    config: CurateConfig,
    out: Path | str,
    *,
    recipe_path: Path | str | None = None,
    keep_work: bool = False,
) -> CurateResult:
    """Curate the sources `config` names into a dataset at `out`; see the module docstring."""
    from syllabus.curate.curriculum import order_table
    from syllabus.curate.decontam import Hit, build_index, write_reports
    from syllabus.curate.executor import run_tasks, world_size
    from syllabus.curate.sources import resolve_format
    from syllabus.store.dataset import DatasetWriter
    from syllabus.store.manifest import RunDir

    out = Path(out)
    for source in config.sources:
        resolve_format(source)  # a missing source fails before any work
    if config.quality.model:
        from syllabus.curate.quality import QualityModel

        QualityModel.load(config.quality.model)
    index = build_index(config.decontam) if config.decontam.enabled else None
    # Files are hashed into the manifest; directories (a whole source tree) are only named.
    inputs = {
        f"source{i}": Path(s.path) for i, s in enumerate(config.sources) if Path(s.path).is_file()
    }
    started = time.perf_counter()
    with RunDir(out, stage="curate", config=config, inputs=inputs) as run:
        work = out / "_work"
        # A work folder from another config is stale: start over.
        fingerprint = config.model_dump_json()
        stale = (work / "config.json").exists() and (
            work / "config.json"
        ).read_text() != fingerprint
        if stale:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        (work / "config.json").write_text(fingerprint)
        world = world_size(config.executor)
        config_json = config.model_dump_json()
        phase1 = run_tasks(
            functools.partial(read_and_filter, config_json=config_json, work=str(work)),
            config.executor,
        )
        steps = {name: StepStats(name) for name in ("read", "filters", "signatures")}
        for part in phase1:
            for name, data in part.items():
                steps[name].merge(StepStats.from_json(name, data))
        removed, dedup_report, dedup_stats = find_duplicates(work, world, config)
        signing = steps.pop("signatures")
        dedup_stats.wall_time_s += signing.wall_time_s
        dedup_stats.bytes_in = signing.bytes_in
        steps["dedup"] = dedup_stats
        (work / "removed.json").write_text(json.dumps(sorted(removed)))
        phase3 = run_tasks(
            functools.partial(decontaminate_and_score, config_json=config_json, work=str(work)),
            config.executor,
        )
        histogram: dict[int, int] = {}
        examples: dict[str, list] = {}
        hits: list[Hit] = []
        for part in phase3:
            for name, data in part["steps"].items():
                steps.setdefault(name, StepStats(name)).merge(StepStats.from_json(name, data))
            for bucket, count in part.get("histogram", {}).items():
                histogram[int(bucket)] = histogram.get(int(bucket), 0) + count
            for bucket, items in part.get("examples", {}).items():
                examples.setdefault(str(bucket), []).extend(items)
            hits.extend(
                Hit(
                    h["record_id"],
                    h["source"],
                    h["benchmark"],
                    h["item_id"],
                    tuple(h["span"]),
                    h["matched"],
                    h["matching_ngrams"],
                )
                for h in part.get("hits", [])
            )
        hits.sort(key=lambda h: (h.benchmark, h.item_id, h.source, h.record_id))
        start = time.perf_counter()
        tables = [
            pq.read_table(work / "final" / f"rank-{r:05d}" / "records.parquet")
            for r in range(world)
        ]
        table = pa.concat_tables(tables) if tables else WORK_SCHEMA.empty_table()
        table, order_note = order_table(table, config.curriculum)
        write = StepStats("write")
        with DatasetWriter(out, shard_rows=config.shard_rows) as writer:
            for row in table.drop_columns(["seq"]).to_pylist():
                record = Record.from_row(row)
                write.saw(record)
                if writer.write(record):
                    write.kept(record)
                else:
                    write.drop("same id as an earlier record")
        write.wall_time_s = time.perf_counter() - start
        steps["write"] = write
        reports_dir = out / "reports"
        reports_dir.mkdir(exist_ok=True)
        reports = {"dedup": reports_dir / "dedup.json"}
        reports["dedup"].write_text(json.dumps(dedup_report, indent=2, ensure_ascii=False))
        if index is not None:
            for name, path in write_reports(hits, index, reports_dir).items():
                reports[f"decontam-{name}"] = path
        ordered = [
            steps[name]
            for name in ("read", "filters", "dedup", "decontam", "quality", "write")
            if name in steps
        ]
        stats = {
            "steps": {s.name: s.to_json() for s in ordered},
            "records_out": write.records_out,
            "tokens_out": write.tokens_out,
            "score_histogram": {str(k): v for k, v in sorted(histogram.items())},
            "score_examples": examples,
            "curriculum": order_note,
            "tasks": world,
            "executor": config.executor.kind,
            "wall_time_s": round(time.perf_counter() - started, 3),
        }
        (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False))
        run.extra["records"] = write.records_out
        if recipe_path:
            run.extra["recipe"] = str(recipe_path)
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    return CurateResult(
        out=out,
        records=write.records_out,
        steps=ordered,
        reports=reports,
        histogram=histogram,
        wall_time_s=time.perf_counter() - started,
    )


def single_step(
    step: str,
    inputs: list[Path | str],
    out: Path | str,
    *,
    dedup: Any = None,
    decontam: Any = None,
    quality: Any = None,
    executor: Any = None,
) -> CurateResult:
    """One step alone over datasets, JSONL or Parquet files or directories (`syllabus dedup`,
    `syllabus decontam`, `syllabus score`): every other step is off."""
    from syllabus.curate.config import DecontamConfig, DedupConfig, FiltersConfig, QualityConfig

    config = CurateConfig(
        sources=[{"path": str(p)} for p in inputs],
        filters=FiltersConfig(enabled=False),
        dedup=dedup if step == "dedup" else DedupConfig(exact=False, near=False),
        decontam=decontam if step == "decontam" else DecontamConfig(enabled=False),
        quality=quality if step == "score" else QualityConfig(),
        **({"executor": executor} if executor is not None else {}),
    )
    return curate(config, out)

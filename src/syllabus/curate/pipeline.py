"""`syllabus curate`: the recipe's steps over its sources, then the curriculum order, to a dataset.

The [curate] table lists the steps in order (default: read, filters, dedup, decontam,
quality). They run as step groups, each on every task (item i of a source goes to task
i % tasks; local processes or Ray), separated by barriers that run once over every task's
output: deduplication is a signature step at the end of one group, the global clustering as
the barrier, and a drop step at the start of the next group. Each group writes its records
(and, on request, the ones it rejected) to a work folder; then the records are put in
curriculum order and written as a Syllabus dataset, with stats.json (records and tokens in/out
per step, merged by step name over tasks, drops by reason, score histogram and examples), the
steps' reports (reports/dedup.json, reports/decontam-<benchmark>.json) and manifest.json.
With `keep_rejected`, every dropped record goes to OUT/rejected (a Syllabus dataset) with
meta dropped_by, drop_reason and, where known, duplicate_of or contamination.

Every record carries its input position (meta[SEQ]), and the output follows it (or the
curriculum order, ties broken by it), so the result does not depend on the executor or the
number of tasks.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from syllabus.curate.config import (
    CurateConfig,
    DecontamConfig,
    DedupConfig,
    ExecutorConfig,
    FiltersConfig,
    QualityConfig,
)
from syllabus.curate.curriculum import order_table
from syllabus.curate.decontam import Decontaminate
from syllabus.curate.dedup_steps import DedupSignatures, DropDuplicates, FindDuplicates
from syllabus.curate.executor import run_groups, world_size
from syllabus.curate.filters import HeuristicFilter
from syllabus.curate.quality import QualityFilter
from syllabus.curate.sources import ReadSources, resolve_format
from syllabus.curate.steps import (
    SEQ,
    WORK_SCHEMA,
    Barrier,
    RecordFile,
    Step,
    read_record_file,
)
from syllabus.stats import StepStats, merge_by_name
from syllabus.store.dataset import DatasetWriter, open_dataset
from syllabus.store.manifest import RunDir
from syllabus.types import Record


@dataclass
class CurateResult:
    out: Path
    records: int
    steps: list[StepStats]
    reports: dict[str, Path] = field(default_factory=dict)
    histogram: dict[int, int] = field(default_factory=dict)
    wall_time_s: float = 0.0
    rejected: Path | None = None
    """OUT/rejected, where the recipe keeps rejected records."""

    @property
    def stats_path(self) -> Path:
        return self.out / "stats.json"


@dataclass
class Plan:
    """The steps of a recipe as the executor runs them: `groups[i]` on every task, then
    `barriers[i]` (if any) once, then `groups[i + 1]`."""

    groups: list[list[Step]]
    barriers: list[Barrier | None]

    @property
    def steps(self) -> list[Step]:
        return [step for group in self.groups for step in group]


def step_names(steps: list[str]) -> list[str]:
    """Each step's name in the stats: its kind, then NAME-2, NAME-3 for repeats."""
    seen: Counter = Counter()
    names = []
    for kind in steps:
        seen[kind] += 1
        names.append(kind if seen[kind] == 1 else f"{kind}-{seen[kind]}")
    return names


def build_plan(config: CurateConfig, work: Path) -> Plan:
    """The recipe's steps, cut into groups at the barriers deduplication needs."""
    groups: list[list[Step]] = [[]]
    barriers: list[Barrier | None] = []
    for kind, name in zip(config.steps, step_names(config.steps), strict=True):
        if kind == "read":
            groups[-1].append(ReadSources(config.sources, name=name))
        elif kind == "filters":
            groups[-1].append(HeuristicFilter(config.filters, name=name))
        elif kind == "dedup":
            folder = work / name
            groups[-1].append(DedupSignatures(config.dedup, folder, name=name))
            barriers.append(FindDuplicates(config.dedup, folder, name=name))
            groups.append([DropDuplicates(folder, name=name)])
        elif kind == "decontam" and config.decontam.enabled:
            groups[-1].append(Decontaminate(config.decontam, name=name))
        elif kind == "quality" and config.quality.model:
            groups[-1].append(
                QualityFilter(config.quality.model, config.quality.threshold, name=name)
            )
    barriers.append(None)
    return Plan(groups, barriers)


def _task_dir(work: Path, group: int, rank: int) -> Path:
    path = work / f"group-{group}" / f"rank-{rank:05d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_group(rank: int, world: int, group: int, *, config_json: str, work: str) -> dict[str, Any]:
    """One task of one step group: the previous group's records for this rank (none for the
    first group, which reads) through the group's steps, to the work folder. A finished task
    (done.json) is not redone."""
    config = CurateConfig.model_validate_json(config_json)
    work_path = Path(work)
    folder = _task_dir(work_path, group, rank)
    if (folder / "done.json").exists():
        return json.loads((folder / "done.json").read_text())
    steps = build_plan(config, work_path).groups[group]
    data: Any = (
        read_record_file(work_path / f"group-{group - 1}" / f"rank-{rank:05d}" / "records.parquet")
        if group
        else iter(())
    )
    rejects = RecordFile(folder / "rejected.parquet") if config.keep_rejected else None
    for step in steps:
        step.rejects = rejects
        data = step.run(data, rank, world)
    kept = RecordFile(folder / "records.parquet")
    for record in data:
        kept.add(record)
    kept.close()
    if rejects is not None:
        rejects.close()
    result = {
        "stats": [[step.name, step.stats.to_json()] for step in steps],
        "outputs": [[step.name, step.outputs()] for step in steps],
    }
    (folder / "done.json").write_text(json.dumps(result))
    return result


def _checked_plan(config: CurateConfig, work: Path) -> Plan:
    """The plan, failing before any work on a missing source, a quality model that does not
    load or an unreadable benchmark file."""
    for source in config.sources:
        resolve_format(source)
    plan = build_plan(config, work)  # loads the quality model
    for step in plan.steps:
        if isinstance(step, Decontaminate):
            _ = step.index  # built here once, for the reports too
    return plan


def curate(
    config: CurateConfig,
    out: Path | str,
    *,
    recipe_path: Path | str | None = None,
) -> CurateResult:
    """Curate the sources `config` names into a dataset at `out`; see the module docstring."""
    out = Path(out)
    work = out / "_work"
    plan = _checked_plan(config, work)
    # Files are hashed into the manifest; directories (a whole source tree) are only named.
    inputs = {
        f"source{i}": Path(s.path) for i, s in enumerate(config.sources) if Path(s.path).is_file()
    }
    started = time.perf_counter()
    with RunDir(out, stage="curate", config=config, inputs=inputs) as run:
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
        reports_dir = out / "reports"
        reports_dir.mkdir(exist_ok=True)
        reports: dict[str, Path] = {}

        def barrier(group: int) -> None:
            step = plan.barriers[group]
            if step is None:
                return
            for name, report in step.run(world).items():
                reports[name] = reports_dir / f"{name}.json"
                reports[name].write_text(json.dumps(report, indent=2, ensure_ascii=False))

        task = functools.partial(run_group, config_json=fingerprint, work=str(work))
        results = run_groups(task, len(plan.groups), barrier, config.executor)
        parts = [(name, data) for group in results for task_result in group
                 for name, data in task_result["stats"]]  # fmt: skip
        parts += [(b.name, b.stats.to_json()) for b in plan.barriers if b is not None]
        steps = merge_by_name(parts)
        outputs: dict[str, list[dict]] = {}
        for group in results:
            for task_result in group:
                for name, data in task_result["outputs"]:
                    outputs.setdefault(name, []).append(data)
        top: dict[str, Any] = {"score_histogram": {}, "score_examples": {}}
        for step in plan.steps:
            finished = step.finish(outputs.get(step.name, []), reports_dir)
            reports.update(finished.reports)
            top.update(finished.stats)
        last = len(plan.groups) - 1
        tables = [
            pq.read_table(work / f"group-{last}" / f"rank-{r:05d}" / "records.parquet")
            for r in range(world)
        ]
        table = pa.concat_tables(tables) if tables else WORK_SCHEMA.empty_table()
        table, order_note = order_table(table, config.curriculum)
        write, rejected_at_write = write_dataset(table, out, config.shard_rows)
        steps["write"] = write
        rejected = None
        if config.keep_rejected:
            rejected = out / "rejected"
            files = [
                work / f"group-{group}" / f"rank-{rank:05d}" / "rejected.parquet"
                for group in range(len(plan.groups))
                for rank in range(world)
            ]
            run.extra["rejected"] = _write_rejected(
                rejected, files, rejected_at_write, config.shard_rows
            )
        elif (out / "rejected").exists():
            shutil.rmtree(out / "rejected")  # from an earlier run that kept them
        stats = {
            "steps": {name: s.to_json() for name, s in steps.items()},
            "records_out": write.records_out,
            "tokens_out": write.tokens_out,
            **top,
            "curriculum": order_note,
            "tasks": world,
            "executor": config.executor.kind,
            "wall_time_s": round(time.perf_counter() - started, 3),
        }
        (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False))
        run.extra["records"] = write.records_out
        if recipe_path:
            run.extra["recipe"] = str(recipe_path)
        shutil.rmtree(work, ignore_errors=True)
    return CurateResult(
        out=out,
        records=write.records_out,
        steps=list(steps.values()),
        reports=reports,
        histogram={int(k): v for k, v in top["score_histogram"].items()},
        wall_time_s=time.perf_counter() - started,
        rejected=rejected,
    )


def write_dataset(table: pa.Table, out: Path, shard_rows: int) -> tuple[StepStats, list[Record]]:
    """The last step: the records of `table` (in its order) as a Syllabus dataset at `out`;
    its stats and the records it rejected (an id written before)."""
    start = time.perf_counter()
    write = StepStats("write")
    rejected: list[Record] = []
    with DatasetWriter(out, shard_rows=shard_rows) as writer:
        for row in table.drop_columns(["seq"]).to_pylist():
            record = Record.from_row(row)
            seq = record.meta.pop(SEQ)
            write.saw(record)
            if writer.write(record):
                write.kept(record)
                continue
            reason = "same id as an earlier record"
            write.drop(reason)
            meta = {SEQ: seq, "dropped_by": "write", "drop_reason": reason}
            rejected.append(
                record.model_copy(
                    update={"meta": {**record.meta, **meta, "duplicate_of": record.id}}
                )
            )
    write.wall_time_s = time.perf_counter() - start
    return write, rejected


def _write_rejected(path: Path, files: list[Path], more: list[Record], shard_rows: int) -> int:
    """Every task's rejected records, in input order, as a Syllabus dataset; how many."""
    tables = [pq.read_table(file) for file in files]
    tables.append(
        pa.Table.from_pylist([{"seq": r.meta[SEQ], **r.to_row()} for r in more], schema=WORK_SCHEMA)
    )
    table = pa.concat_tables(tables).sort_by("seq")
    with DatasetWriter(path, shard_rows=shard_rows) as writer:
        for row in table.drop_columns(["seq"]).to_pylist():
            record = Record.from_row(row)
            record.meta.pop(SEQ)
            # Exact copies have the same id: the dataset holds one of them, as the kept one.
            writer.write(record)
    return len(open_dataset(path))


def single_step(
    step: str,
    inputs: list[Path | str],
    out: Path | str,
    *,
    dedup: DedupConfig | None = None,
    decontam: DecontamConfig | None = None,
    quality: QualityConfig | None = None,
    executor: ExecutorConfig | None = None,
    keep_rejected: bool = False,
) -> CurateResult:
    """One step alone over datasets, JSONL or Parquet files or directories (`syllabus dedup`,
    `syllabus decontam`, `syllabus score`): the records are read, pass that step, and are
    written."""
    kinds = {"dedup": "dedup", "decontam": "decontam", "score": "quality"}
    config = CurateConfig(
        sources=[{"path": str(p)} for p in inputs],
        steps=["read", kinds[step]],
        filters=FiltersConfig(enabled=False),
        dedup=dedup or DedupConfig(),
        decontam=decontam or DecontamConfig(),
        quality=quality or QualityConfig(),
        keep_rejected=keep_rejected,
        **({"executor": executor} if executor is not None else {}),
    )
    return curate(config, out)

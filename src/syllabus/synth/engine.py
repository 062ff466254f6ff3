"""`synthesize`: plan jobs, run them concurrently against the teacher, keep what verifies.

Layout of an output directory (OUT is itself a dataset):

    OUT/index.json, OUT/data/     the final dataset: plan order, near-duplicates removed
    OUT/generated/                every accepted record, written as jobs finish (resumable)
    OUT/jobs.jsonl                one line per finished job: its counts and rejection reasons
    OUT/stats.json, manifest.json
    OUT/spend.json                what the teacher was paid so far, for [synth] max_cost_usd

    OUT/fingerprint.json          what made it: teacher, sampling, templates, grounding, settings

A job is finished once its line is in jobs.jsonl (written after its records), so a run killed
at any point re-runs only unfinished jobs; their teacher calls come back from the response
cache and the dataset writer drops ids it already holds, so nothing is lost or duplicated. The
final dataset is rebuilt from `generated/` in plan order, which makes near-duplicate removal
independent of the order in which concurrent jobs happened to finish. A directory is resumed
only by the settings that made it (fingerprint.json); other settings are refused (or, with
`fresh`, its results are removed first).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from syllabus.backends import Backend
from syllabus.common.retrieval import Retriever
from syllabus.errors import UserError
from syllabus.fingerprint import check_fingerprint, digest, discard_results
from syllabus.progress import progress_bar
from syllabus.sandbox import Sandbox, isolation_level
from syllabus.store import DatasetWriter, RowAppender, open_dataset
from syllabus.synth import stats as synth_stats
from syllabus.synth.config import SynthConfig
from syllabus.synth.cost import SpendMeter, payers
from syllabus.synth.generators import GENERATORS
from syllabus.synth.jobs import Context, Job, Outcome, uses_grammar
from syllabus.synth.prompts import Templates, choose_voice, job_seed
from syllabus.synth.topics import Topic, build_tree
from syllabus.types import Record

MAX_CONSECUTIVE_TEACHER_ERRORS = 8


def plan(config: SynthConfig, topics: list[Topic], seed: int, retriever=None) -> Iterator[Job]:
    """Jobs in a fixed order: cycle -> topic -> generator -> index. One cycle unless a token
    budget asks for more (later cycles draw new voices and new passages)."""
    cycles = itertools.count() if config.budget_tokens else range(1)
    order = 0
    for cycle in cycles:
        for topic in topics:
            for generator in config.generators:
                for index in range(getattr(config, generator).per_topic):
                    seed_ = job_seed(seed, generator, topic.name, cycle, index)
                    passages = (
                        tuple(retriever.passages_for(topic.query, cycle * 16 + index))
                        if retriever is not None
                        else ()
                    )
                    yield Job(
                        generator, topic, index, cycle, seed_,
                        choose_voice(config.diversity, seed_), passages, order,
                    )  # fmt: skip
                    order += 1


@dataclass
class SynthResult:
    out: Path
    records: int
    stats: dict
    wall_time_s: float


class _Journal:
    """jobs.jsonl: one fsync'd line per finished job (a torn last line is dropped and redone)."""

    def __init__(self, path: Path):
        self._rows = RowAppender(path, durable=True)
        self.entries: dict[str, dict] = {row["job"]: row for row in self._rows.rows}

    def add(self, entry: dict) -> None:
        self.entries[entry["job"]] = entry
        self._rows.write(entry)

    def close(self) -> None:
        self._rows.close()


RESULTS = (
    "jobs.jsonl", "generated", "data", "index.json", "stats.json", "fingerprint.json", "spend.json",
)  # fmt: skip
"""What a synth run writes into OUT (besides manifest.json); `fresh` removes exactly these."""


def synthesize(
    config: SynthConfig,
    backend: Backend,
    out: Path | str,
    *,
    seed: int = 0,
    base_dir: Path | None = None,
    show_progress: bool = True,
    prices: tuple[float, float] = (0.0, 0.0),
    fresh: bool = False,
    stop_after_s: float | None = None,
) -> SynthResult:
    """Generate `config`'s data with `backend` as the teacher into the dataset `out` (and
    with their own teachers the generators whose table names one).

    Resumes what `out` holds when the same settings made it; refuses other settings (or, with
    `fresh`, removes the old results first). `stop_after_s` (benchmarks) starts no job after
    that many seconds and finishes the ones in flight: what it keeps depends on the machine's
    speed, which is why recipes have no such setting."""
    if not config.generators:
        raise UserError(
            "the recipe's [synth] enables no generator: add [synth.textbook], [synth.exercise], "
            "[synth.reasoning] or [synth.dialogue]"
        )
    teachers = _own_teachers(config)
    try:
        _check_teachers(config, backend, teachers)
        return _synthesize(
            config, backend, teachers, Path(out), seed=seed, base_dir=base_dir,
            show_progress=show_progress, prices=prices, fresh=fresh, stop_after_s=stop_after_s,
        )  # fmt: skip
    finally:
        for teacher in {id(t): t for t in teachers.values()}.values():
            teacher.close()


def _own_teachers(config: SynthConfig) -> dict[str, Backend]:
    """Generator -> the backend its `[synth.<generator>.teacher]` table describes; generators
    naming the same table share one backend."""
    from syllabus.backends import make_backend

    made: dict[str, Backend] = {}
    teachers: dict[str, Backend] = {}
    try:
        for generator in config.generators:
            section = getattr(config, generator).teacher
            if section is not None:
                key = section.model_dump_json()
                if key not in made:
                    made[key] = make_backend(section)
                teachers[generator] = made[key]
    except BaseException:
        for teacher in made.values():
            teacher.close()
        raise
    return teachers


def _check_teachers(config: SynthConfig, backend: Backend, teachers: dict[str, Backend]) -> None:
    """Every generator's teacher can take the requests it will be sent: a base model (no chat
    template) only continues prompts, which exercises do in completion mode."""
    for generator in config.generators:
        teacher = teachers.get(generator, backend)
        completion = generator == "exercise" and config.exercise.mode == "completion"
        if (needs := "complete" if completion else "chat") in teacher.capabilities:
            continue
        table = f"[synth.{generator}.teacher]" if generator in teachers else "[teacher]"
        fix = (
            'a base model only continues text: set [synth.exercise] mode = "completion", and give '
            "the other generators a chat teacher (their own `teacher` table or [teacher])"
            if needs == "chat"
            else "completion mode needs a teacher that continues plain prompts"
        )
        raise UserError(
            f"[synth.{generator}]: its teacher {teacher.model_id} ({table}) cannot take {needs} "
            f"requests; {fix}"
        )


def _synthesize(
    config: SynthConfig,
    backend: Backend,
    teachers: dict[str, Backend],
    out: Path,
    *,
    seed: int,
    base_dir: Path | None,
    show_progress: bool,
    prices: tuple[float, float],
    fresh: bool,
    stop_after_s: float | None,
) -> SynthResult:
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    templates = Templates(config.templates, base_dir)
    retriever = None
    if config.grounding is not None:
        grounding = config.grounding
        retriever = Retriever(grounding.corpus, grounding.passages, grounding.max_chars, base_dir)
    if fresh:
        discard_results(out, RESULTS)
    check_fingerprint(
        out / "fingerprint.json",
        _made_by(config, backend, teachers, templates, retriever, seed),
        has_results=any((out / name).exists() for name in ("jobs.jsonl", "generated", "data")),
        what="synth",
    )
    meter = SpendMeter(
        out / "spend.json", payers(config, backend, prices, teachers), config.max_cost_usd
    )
    topics, expanded = build_tree(config.topics, backend, templates, seed)
    journal = _Journal(out / "jobs.jsonl")
    generated = out / "generated"
    resume = (generated / "index.json").exists()
    writer = DatasetWriter(generated, shard_rows=8, append=resume)
    sandbox = Sandbox(workers=max(1, min(2, os.cpu_count() or 1)))
    ctx = Context(backend, sandbox, templates, config, teachers=teachers)
    run = _Run(
        journal, writer, ctx,
        limit=config.concurrency or max(2, backend.concurrency),
        per_cycle=len(topics) * sum(getattr(config, g).per_topic for g in config.generators),
        tokens=sum(e.get("tokens", 0) for e in journal.entries.values()),
        start=start, meter=meter,
        deadline=start + stop_after_s if stop_after_s is not None else None,
    )  # fmt: skip
    try:
        with progress_bar(show_progress, "{task.fields[info]}") as progress:
            total = config.budget_tokens or run.per_cycle
            done = run.tokens if config.budget_tokens else len(journal.entries)
            task = progress.add_task("synth", total=total, completed=done, info="")
            asyncio.run(_run_jobs(plan(config, topics, seed, retriever), run, progress, task))
    finally:
        writer.close()
        journal.close()
        sandbox.close()
        meter.save()
    entries = [*journal.entries.values(), *run.incomplete]
    finished = _finalize(config, out, entries, topics, ctx, expanded, prices, start, run.stopped)
    if meter.hit:
        raise UserError(run.stopped)
    return finished


def _made_by(config, backend, teachers, templates, retriever, seed) -> dict:
    """Everything that can change what a job writes, for fingerprint.json. Not what only sizes
    the run: a larger token budget resumes and adds cycles; concurrency and the final
    near-duplicate pass (redone on every run) change no record."""
    made_by = {
        "model": backend.model_id,
        "teacher": backend.identity,
        "sampling": backend.defaults,
        "seed": seed,
        "templates": templates.hashes,
        "grounding": digest(retriever.passages) if retriever is not None else None,
        "constrained": uses_grammar(config, backend),
        "sandbox": isolation_level(),
        "synth": config.model_dump(
            mode="json",
            exclude={"templates", "budget_tokens", "concurrency", "dedup", "max_cost_usd"},
        ),
    }
    if teachers:
        # A generator's own teacher, named by its weights like the run's (a table names only
        # a model, whose file can change).
        made_by["teachers"] = {
            generator: {
                "model": teacher.model_id,
                "teacher": teacher.identity,
                "sampling": teacher.defaults,
                "constrained": uses_grammar(config, teacher),
            }
            for generator, teacher in sorted(teachers.items())
        }
    return made_by


@dataclass
class _Cycle:
    """One pass of the plan: how many of its jobs have finished and what they kept."""

    finished: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)


@dataclass
class _Run:
    """The state of a run's job loop."""

    journal: _Journal
    writer: DatasetWriter
    ctx: Context
    limit: int
    per_cycle: int
    tokens: int
    start: float
    meter: SpendMeter
    deadline: float | None = None
    """No job starts after this time (`stop_after_s`)."""
    cycles: dict[int, _Cycle] = field(default_factory=dict)
    incomplete: list[dict] = field(default_factory=list)
    stopped: str = ""
    """Why a run ended before its plan or budget (a cycle that accepted nothing, the spend
    ceiling)."""

    def count(self, cycle: int, records: int, rejected: dict) -> None:
        """Tally a finished job; a budget run stops once a whole cycle has kept nothing, since
        repeating the plan would only repeat the failure (forever)."""
        tally = self.cycles.setdefault(cycle, _Cycle())
        tally.finished += 1
        tally.accepted += records
        tally.rejected.update(rejected)
        budget = self.ctx.config.budget_tokens
        if budget and not self.stopped and tally.finished == self.per_cycle and not tally.accepted:
            reasons = ", ".join(f"{r} {n}" for r, n in tally.rejected.most_common(3)) or "none"
            self.stopped = (
                f"stopped at {self.tokens:,} of the {budget:,} budget tokens: cycle {cycle} "
                f"accepted no record (rejected: {reasons}), so repeating the plan would not "
                "either; fix the teacher or templates (see stats.json) and run again"
            )


async def _run_jobs(jobs: Iterator[Job], run: _Run, progress, task) -> None:
    ctx, journal, writer = run.ctx, run.journal, run.writer
    backends = list({id(b): b for b in (ctx.backend, *ctx.teachers.values())}.values())
    for backend in backends:
        await backend._open()
    pending: set[asyncio.Task] = set()
    budget = ctx.config.budget_tokens
    accepted = sum(e["records"] for e in journal.entries.values())
    exhausted = False

    def fill() -> None:
        nonlocal exhausted
        while (
            not exhausted
            and not run.stopped
            and len(pending) < run.limit
            and not (budget and run.tokens >= budget)
            and not (run.deadline is not None and time.time() >= run.deadline)
        ):
            job = next(jobs, None)
            if job is None:
                exhausted = True
            elif job.key in journal.entries:
                entry = journal.entries[job.key]
                run.count(job.cycle, entry["records"], entry.get("rejected", {}))
            elif run.meter.reached():
                run.meter.hit = True
                run.stopped = run.meter.stop_message()
            else:
                runner = GENERATORS[job.generator](job, ctx)
                pending.add(asyncio.ensure_future(_tagged(job, runner)))

    def persist(results: list[tuple[Job, Outcome, int]]) -> None:
        for job, outcome, new_tokens in results:
            for record in outcome.records:
                record.meta["order"] = job.order
                writer.write(record)
            writer.flush()  # records before the journal line: a finished job is on disk
            entry = _journal_entry(job, outcome, new_tokens)
            if outcome.rejected.get("teacher error") and not outcome.records:
                # Not finished: the teacher failed (outage, rate limit), not the job, and kept
                # nothing; a re-run tries it again. A job that kept records is finished even if
                # some calls failed: run again, a failed attempt could now succeed and write a
                # second, different record into the same slot.
                run.incomplete.append({**entry, "incomplete": True})
            else:
                journal.add(entry)
        run.meter.save()

    try:
        while True:
            fill()
            if not pending:
                break
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            results = []
            for future in finished:
                job, outcome = future.result()
                new_tokens = sum(r.meta.get("completion_tokens", 0) for r in outcome.records)
                results.append((job, outcome, new_tokens))
                run.tokens += new_tokens
                accepted += len(outcome.records)
                run.count(job.cycle, len(outcome.records), outcome.rejected)
            if ctx.consecutive_errors >= MAX_CONSECUTIVE_TEACHER_ERRORS:
                persist(results)
                for future in pending:
                    future.cancel()
                raise UserError(
                    f"the teacher failed {ctx.consecutive_errors} times in a row "
                    f"({ctx.last_error}); the work so far is saved: fix the teacher and run the "
                    "same command again to resume"
                )
            # Start the next jobs first, then write (Parquet, fsync) off the event loop, so the
            # teacher's slots are not left idle while the disk works.
            fill()
            await asyncio.to_thread(persist, results)
            elapsed = max(time.time() - run.start, 1e-9)
            progress.update(
                task,
                advance=sum(r[2] for r in results) if budget else len(results),
                info=f"{accepted} records, {ctx.completion_tokens / elapsed:.0f} tok/s",
            )
    finally:
        for backend in backends:
            await backend._close_async()


async def _tagged(job: Job, runner) -> tuple[Job, Outcome]:
    return job, await runner


def _journal_entry(job: Job, outcome: Outcome, tokens: int) -> dict:
    return {
        "job": job.key,
        "order": job.order,
        "cycle": job.cycle,
        "generator": job.generator,
        "topic": job.topic.name,
        "audience": job.voice.audience,
        "records": len(outcome.records),
        "attempts": outcome.attempts,
        "rejected": dict(outcome.rejected),
        "techniques": {k: v for k, v in outcome.techniques.items() if v},
        "samples": outcome.samples,
        "tokens": tokens,
    }


def _finalize(
    config, out, entries, topics, ctx, expanded, prices, start, stopped=""
) -> SynthResult:
    """Rebuild the final dataset in plan order without near-duplicates; write stats.json."""
    records = sorted(
        open_dataset(out / "generated"),
        key=lambda r: (r.meta.get("order", 0), r.meta.get("section", 0), r.id),
    )
    kept, duplicates = _drop_near_duplicates(records, config)
    staging = out / ".final"
    shutil.rmtree(staging, ignore_errors=True)
    with DatasetWriter(staging, shard_rows=2000) as writer:
        writer.write_all(kept)
    for name in ("index.json", "data"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    os.replace(staging / "data", out / "data")
    os.replace(staging / "index.json", out / "index.json")
    shutil.rmtree(staging, ignore_errors=True)
    wall = time.time() - start
    stats = synth_stats.summarize(
        kept=kept,
        duplicates=duplicates,
        journal=entries,
        topics=[t.name for t in topics],
        ctx=ctx,
        expanded=expanded,
        prices=prices,
        wall_time_s=wall,
    )
    if stopped:
        stats["stopped"] = stopped
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False))
    return SynthResult(out, len(kept), stats, wall)


def _drop_near_duplicates(records: list[Record], config: SynthConfig):
    if not config.dedup.enabled:
        return records, []
    from syllabus.common.neardup import NearDuplicateIndex

    index = NearDuplicateIndex(
        threshold=config.dedup.threshold,
        num_perm=config.dedup.num_perm,
        shingle_size=config.dedup.shingle_size,
    )
    kept, duplicates = [], []
    for record in records:
        # Exercises are compared on their prompt: two bodies for one task are still one task.
        text = record.meta.get("prompt", record.text)
        twin = index.check_and_add(record.id, text)
        if twin is None:
            kept.append(record)
        else:
            duplicates.append({"id": record.id, "kind": record.kind, "duplicate_of": twin})
    return kept, duplicates


def synth_recipe(
    recipe,
    out: Path | str,
    *,
    recipe_path: Path | None = None,
    show_progress: bool = True,
    fresh: bool = False,
    console=None,
) -> SynthResult:
    """`syllabus synth`: the recipe's teacher writes its `[synth]` data into `out`, with a
    manifest (config, versions, input hashes) beside it. `fresh` discards what `out` holds.

    Before the first teacher call the plan's cost estimate is printed (on `console`, default
    stderr) and recorded in the manifest; a plan over `[synth] max_cost_usd` is refused."""
    from rich.console import Console
    from rich.markup import escape

    from syllabus.backends import make_backend
    from syllabus.store.manifest import RunDir
    from syllabus.synth.cost import check_ceiling, estimate_cost, teacher_prices

    out = Path(out)
    teacher = recipe.teacher
    prices = teacher_prices(teacher)
    inputs = {"recipe": recipe_path} if recipe_path else {}
    base_dir = Path(recipe_path).parent if recipe_path else None
    estimate = estimate_cost(recipe.synth, teacher, seed=recipe.seed, base_dir=base_dir)
    with RunDir(out, stage="synth", config=recipe, inputs=inputs) as run:
        (console or Console(stderr=True)).print(escape(estimate.line()), highlight=False)
        run.extra["cost_estimate"] = estimate.as_dict()
        run.write_manifest("running")
        check_ceiling(estimate, recipe.synth.max_cost_usd)
        backend = make_backend(teacher)
        try:
            result = synthesize(
                recipe.synth, backend, out, seed=recipe.seed, base_dir=base_dir,
                show_progress=show_progress, prices=prices, fresh=fresh,
            )  # fmt: skip
        finally:
            backend.close()
        run.extra["teacher"] = {"kind": backend.kind, "model_id": backend.model_id}
        run.extra["summary"] = {
            "records": result.records,
            "records_by_kind": result.stats["records_by_kind"],
        }
    return result

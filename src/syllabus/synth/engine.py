"""`synthesize`: plan jobs, run them concurrently against the teacher, keep what verifies.

Layout of an output directory (OUT is itself a dataset):

    OUT/index.json, OUT/data/     the final dataset: plan order, near-duplicates removed
    OUT/generated/                every accepted record, written as jobs finish (resumable)
    OUT/jobs.jsonl                one line per finished job: its counts and rejection reasons
    OUT/stats.json, manifest.json

A job is finished once its line is in jobs.jsonl (written after its records), so a run killed
at any point re-runs only unfinished jobs; their teacher calls come back from the response
cache and the dataset writer drops ids it already holds, so nothing is lost or duplicated. The
final dataset is rebuilt from `generated/` in plan order, which makes near-duplicate removal
independent of the order in which concurrent jobs happened to finish.
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

from syllabus.backends import Backend, Completion
from syllabus.errors import BackendError, UserError
from syllabus.progress import progress_bar
from syllabus.sandbox import ExecResult, Limits, Sandbox
from syllabus.store import DatasetWriter, open_dataset
from syllabus.synth import stats as synth_stats
from syllabus.synth.config import SynthConfig
from syllabus.synth.generators import GENERATORS, Outcome
from syllabus.synth.prompts import Templates, Voice, choose_voice, job_seed
from syllabus.synth.topics import Topic, build_tree
from syllabus.types import Record

MAX_CONSECUTIVE_TEACHER_ERRORS = 8


@dataclass(frozen=True)
class Job:
    generator: str
    topic: Topic
    index: int
    cycle: int
    seed: int
    voice: Voice
    passages: tuple[str, ...] = ()
    order: int = 0

    @property
    def key(self) -> str:
        return f"{self.generator}|{self.topic.name}|{self.cycle}|{self.index}"

    def attempt_seed(self, attempt: int) -> int:
        return job_seed(self.seed, attempt)


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
class Context:
    """What a generator needs: the teacher, the sandbox, templates, and shared counters."""

    backend: Backend
    sandbox: Sandbox
    templates: Templates
    config: SynthConfig
    use_grammar: bool = False
    calls: Counter = field(default_factory=Counter)
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    teacher_errors: Counter = field(default_factory=Counter)
    consecutive_errors: int = 0
    last_error: str = ""

    async def ask(
        self, step: str, prompt: str, *, seed: int, max_tokens: int, grammar: str | None = None
    ) -> Completion | None:
        """One chat call; None (counted) when the teacher fails after its retries."""
        request = self.backend.request(
            messages=[{"role": "user", "content": prompt}],
            seed=seed,
            max_tokens=max_tokens,
            grammar=grammar,
        )
        try:
            answer = await self.backend.agenerate(request)
        except BackendError as exc:
            self.teacher_errors[str(exc)[:160]] += 1
            self.consecutive_errors += 1
            self.last_error = str(exc)
            return None
        self.consecutive_errors = 0
        self.calls[step] += 1
        self.cached_calls += answer.cached
        self.prompt_tokens += answer.usage.prompt_tokens
        self.completion_tokens += answer.usage.completion_tokens
        return answer

    async def execute(self, program: str, limits: Limits) -> ExecResult:
        return await asyncio.to_thread(self.sandbox.run, program, limits=limits)


@dataclass
class SynthResult:
    out: Path
    records: int
    stats: dict
    wall_time_s: float


class _Journal:
    """jobs.jsonl: append-only, one fsync'd line per finished job; a torn last line is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.exists():
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    self.entries[entry["job"]] = entry
            # Rewrite without a torn tail so later appends start on a fresh line.
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(e) + "\n" for e in self.entries.values()))
            os.replace(tmp, path)
        self._handle = path.open("a", encoding="utf-8")

    def add(self, entry: dict) -> None:
        self.entries[entry["job"]] = entry
        self._handle.write(json.dumps(entry) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def synthesize(
    config: SynthConfig,
    backend: Backend,
    out: Path | str,
    *,
    seed: int = 0,
    base_dir: Path | None = None,
    show_progress: bool = True,
    prices: tuple[float, float] = (0.0, 0.0),
) -> SynthResult:
    """Generate `config`'s data with `backend` as the teacher into the dataset `out`."""
    if not config.generators:
        raise UserError(
            "the recipe's [synth] enables no generator: add [synth.textbook], [synth.exercise], "
            "[synth.reasoning] or [synth.dialogue]"
        )
    out = Path(out)
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    templates = Templates(config.templates, base_dir)
    retriever = None
    if config.grounding is not None:
        from syllabus.synth.grounding import Retriever

        retriever = Retriever(config.grounding, base_dir)
    topics, expanded = build_tree(config.topics, backend, templates, seed)
    journal = _Journal(out / "jobs.jsonl")
    generated = out / "generated"
    resume = (generated / "index.json").exists()
    writer = DatasetWriter(generated, shard_rows=8, append=resume)
    tokens_done = sum(e.get("tokens", 0) for e in journal.entries.values())
    sandbox = Sandbox(workers=max(1, min(2, os.cpu_count() or 1)))
    use_grammar = "grammar" in backend.capabilities and (
        config.constrained == "on" or (config.constrained == "auto" and backend.kind == "embedded")
    )
    ctx = Context(backend, sandbox, templates, config, use_grammar=use_grammar)
    limit = config.concurrency or max(2, backend.concurrency)
    incomplete: list[dict] = []
    try:
        with progress_bar(show_progress, "{task.fields[info]}") as progress:
            total = config.budget_tokens or sum(
                len(topics) * getattr(config, g).per_topic for g in config.generators
            )
            done = tokens_done if config.budget_tokens else len(journal.entries)
            task = progress.add_task("synth", total=total, completed=done, info="")
            asyncio.run(
                _run_jobs(
                    plan(config, topics, seed, retriever), journal, writer, ctx, limit,
                    progress, task, tokens_done, start, incomplete,
                )
            )  # fmt: skip
    finally:
        writer.close()
        journal.close()
        sandbox.close()
    entries = [*journal.entries.values(), *incomplete]
    finished = _finalize(config, out, entries, topics, ctx, expanded, prices, start)
    return finished


async def _run_jobs(
    jobs, journal, writer, ctx, limit, progress, task, tokens_done, start, incomplete
):
    await ctx.backend._open()
    pending: set[asyncio.Task] = set()
    budget = ctx.config.budget_tokens
    tokens = tokens_done
    accepted = sum(e["records"] for e in journal.entries.values())
    exhausted = False

    def fill() -> None:
        nonlocal exhausted
        while not exhausted and len(pending) < limit and not (budget and tokens >= budget):
            job = next(jobs, None)
            if job is None:
                exhausted = True
            elif job.key not in journal.entries:
                runner = GENERATORS[job.generator](job, ctx)
                pending.add(asyncio.ensure_future(_tagged(job, runner)))

    def persist(results: list[tuple[Job, Outcome, int]]) -> None:
        for job, outcome, new_tokens in results:
            for record in outcome.records:
                record.meta["order"] = job.order
                writer.write(record)
            writer.flush()  # records before the journal line: a finished job is on disk
            entry = _journal_entry(job, outcome, new_tokens)
            if outcome.rejected.get("teacher error"):
                # Not finished: the teacher failed (outage, rate limit), not the job. A re-run
                # tries it again; its records so far are kept and deduplicated by id.
                incomplete.append({**entry, "incomplete": True})
            else:
                journal.add(entry)

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
                tokens += new_tokens
                accepted += len(outcome.records)
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
            elapsed = max(time.time() - start, 1e-9)
            progress.update(
                task,
                advance=sum(r[2] for r in results) if budget else len(results),
                info=f"{accepted} records, {ctx.completion_tokens / elapsed:.0f} tok/s",
            )
    finally:
        await ctx.backend._close_async()


async def _tagged(job: Job, runner) -> tuple[Job, Outcome]:
    return job, await runner


def _journal_entry(job: Job, outcome: Outcome, tokens: int) -> dict:
    return {
        "job": job.key,
        "order": job.order,
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


def _finalize(config, out, entries, topics, ctx, expanded, prices, start) -> SynthResult:
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
    (out / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False))
    return SynthResult(out, len(kept), stats, wall)


def _drop_near_duplicates(records: list[Record], config: SynthConfig):
    if not config.dedup.enabled:
        return records, []
    from syllabus.curate.dedup import NearDuplicateIndex

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
    recipe, out: Path | str, *, recipe_path: Path | None = None, show_progress: bool = True
) -> SynthResult:
    """`syllabus synth`: the recipe's teacher writes its `[synth]` data into `out`, with a
    manifest (config, versions, input hashes) beside it."""
    from syllabus.backends import make_backend
    from syllabus.store.manifest import RunDir

    out = Path(out)
    teacher = recipe.teacher
    prices = (
        getattr(teacher, "price_in_per_mtok", 0.0),
        getattr(teacher, "price_out_per_mtok", 0.0),
    )
    inputs = {"recipe": recipe_path} if recipe_path else {}
    base_dir = Path(recipe_path).parent if recipe_path else None
    with RunDir(out, stage="synth", config=recipe, inputs=inputs) as run:
        backend = make_backend(teacher)
        try:
            result = synthesize(
                recipe.synth, backend, out, seed=recipe.seed, base_dir=base_dir,
                show_progress=show_progress, prices=prices,
            )  # fmt: skip
        finally:
            backend.close()
        run.extra["teacher"] = {"kind": backend.kind, "model_id": backend.model_id}
        run.extra["summary"] = {
            "records": result.records,
            "records_by_kind": result.stats["records_by_kind"],
        }
    return result

"""Run a recipe's stages in one run directory.

Stages present so far: `synth.textbook` (teacher-written textbook sections). Each stage writes
a dataset under `<run>/datasets/<stage>` as results arrive; a re-run skips the jobs whose
records are already there and serves repeated teacher calls from the response cache, so a run
killed at any point resumes without losing or duplicating work.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from syllabus.backends import Backend, Completion, make_backend
from syllabus.errors import BackendError
from syllabus.progress import progress_bar
from syllabus.recipe import Recipe
from syllabus.store import DatasetWriter, open_dataset
from syllabus.store.manifest import RunDir
from syllabus.synth import textbook


@dataclass
class StageResult:
    name: str
    dataset: Path
    records: int
    new_records: int
    rejected: Counter = field(default_factory=Counter)
    wall_time_s: float = 0.0


@dataclass
class RunResult:
    run_dir: Path
    stages: list[StageResult]
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_time_s: float = 0.0


def _run_textbook(
    recipe: Recipe, backend: Backend, run_dir: Path, progress: Progress
) -> StageResult:
    config = recipe.synth.textbook
    out = run_dir / "datasets" / "textbook"
    start = time.time()
    resume = (out / "index.json").exists()
    done = {textbook.job_key(r.meta) for r in open_dataset(out)} if resume else set()
    jobs = list(textbook.pending(textbook.plan(config, recipe.seed), done))
    rejected: Counter = Counter()
    task = progress.add_task(
        "synth textbook", total=len(jobs) + len(done), completed=len(done), rate=""
    )
    tokens = 0
    # Small shards: a killed run keeps everything up to its last few records.
    with DatasetWriter(out, shard_rows=4, append=resume) as writer:

        def on_result(index: int, result: Completion | BaseException) -> None:
            nonlocal tokens
            if isinstance(result, BackendError):
                rejected[f"teacher error: {result}"[:120]] += 1
            elif isinstance(result, Completion):
                record = textbook.to_record(jobs[index], result, backend, config)
                if record is None:
                    rejected["empty answer"] += 1
                else:
                    writer.write(record)
                tokens += result.usage.completion_tokens
            elapsed = max(time.time() - start, 1e-9)
            progress.update(task, advance=1, rate=f"{tokens / elapsed:.0f} tok/s")

        requests = textbook.requests(backend, config, jobs)
        results = backend.generate_many(requests, on_result=on_result, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, BackendError):
                raise result
    dataset = open_dataset(out)
    return StageResult(
        "synth.textbook", out, len(dataset), len(dataset) - len(done), rejected, time.time() - start
    )


def run_recipe(
    recipe: Recipe,
    *,
    run_dir: Path | None = None,
    recipe_path: Path | None = None,
    show_progress: bool = True,
) -> RunResult:
    """Run every stage the recipe configures; returns what each produced."""
    run_dir = Path(run_dir or Path(recipe.output_dir) / recipe.name)
    start = time.time()
    inputs = {"recipe": recipe_path} if recipe_path else {}
    with RunDir(run_dir, stage="run", config=recipe, inputs=inputs) as run:
        backend = make_backend(recipe.teacher)
        stages: list[StageResult] = []
        try:
            with progress_bar(show_progress, "{task.fields[rate]}") as progress:
                if recipe.synth.textbook is not None:
                    stages.append(_run_textbook(recipe, backend, run_dir, progress))
        finally:
            backend.close()
        cache = backend.cache
        result = RunResult(
            run_dir=run_dir,
            stages=stages,
            calls=backend.calls,
            cache_hits=cache.hits if cache else 0,
            prompt_tokens=backend.usage.prompt_tokens,
            completion_tokens=backend.usage.completion_tokens,
            wall_time_s=time.time() - start,
        )
        run.extra["teacher"] = {"kind": backend.kind, "model_id": backend.model_id}
        run.extra["summary"] = {
            "stages": {
                s.name: {"records": s.records, "new": s.new_records, "rejected": dict(s.rejected)}
                for s in stages
            },
            "teacher_calls": result.calls,
            "cache_hits": result.cache_hits,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        }
        (run_dir / "summary.json").write_text(json.dumps(run.extra["summary"], indent=2))
    return result

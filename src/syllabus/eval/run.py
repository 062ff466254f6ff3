"""`syllabus eval`: generate with any backend, score, and write per-sample records and a summary.

Per-sample records go to `samples.jsonl` as they are scored, so a re-run skips samples already
done. `summary.json` records every setting that can move a score (backend, model id, sampling
parameters, seed, task version, execution limits, isolation level) next to the scores.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from syllabus.backends import Backend, Completion
from syllabus.errors import UserError
from syllabus.eval import humaneval
from syllabus.sandbox import isolation_level
from syllabus.store.manifest import RunDir

TASKS = ("humaneval",)


@dataclass
class EvalSettings:
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 384
    seed: int = 0
    limit: int | None = None
    """Evaluate only the first N problems (smoke runs)."""
    execution: humaneval.ExecutionSettings = field(default_factory=humaneval.ExecutionSettings)


def _read_done(path: Path) -> dict[tuple[str, int], dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: that sample is redone
            done[(row["task_id"], row["sample"])] = row
    return done


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not show,
    )


def eval_humaneval(
    backend: Backend, out: Path, settings: EvalSettings, *, show_progress: bool = True
) -> dict:
    """Generate `n_samples` completions per problem, execute them, and score pass@k."""
    problems = humaneval.load_problems()[: settings.limit]
    by_id = {p.task_id: p for p in problems}
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "samples.jsonl"
    done = _read_done(samples_path)
    jobs = [
        (p, i) for p in problems for i in range(settings.n_samples) if (p.task_id, i) not in done
    ]
    start = time.time()
    with _progress(show_progress) as progress, samples_path.open("a") as sink:
        gen_task = progress.add_task("generate", total=len(jobs))
        requests = [
            backend.request(
                prompt=p.prompt,
                max_tokens=settings.max_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                stop=humaneval.STOP,
                seed=settings.seed + i,
            )
            for p, i in jobs
        ]
        completions: list[Completion | BaseException] = backend.generate_many(
            requests, on_result=lambda *_: progress.advance(gen_task), return_exceptions=True
        )
        for result in completions:
            if isinstance(result, BaseException) and not isinstance(result, UserError):
                raise result
        texts = [
            humaneval.truncate(c.text) if isinstance(c, Completion) else "" for c in completions
        ]
        exec_task = progress.add_task("execute", total=len(jobs))

        def record(index: int, result) -> None:
            problem, sample = jobs[index]
            completion = completions[index]
            row = {
                "task_id": problem.task_id,
                "sample": sample,
                "completion": texts[index],
                "status": result.status,
                "passed": result.passed,
                "error": result.summary() if not result.passed else "",
                "exec_time_s": round(result.wall_time, 4),
                "gen_time_s": round(completion.latency_s, 3)
                if isinstance(completion, Completion)
                else None,
                "gen_error": str(completion) if isinstance(completion, BaseException) else "",
                "completion_tokens": completion.usage.completion_tokens
                if isinstance(completion, Completion)
                else 0,
            }
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            progress.advance(exec_task)

        humaneval.execute(
            by_id,
            [(p.task_id, t) for (p, _), t in zip(jobs, texts, strict=True)],
            settings.execution,
            on_result=record,
        )
    rows = [
        row
        for key, row in _read_done(samples_path).items()
        if key[0] in by_id and key[1] < settings.n_samples
    ]
    scores = humaneval.score([r["task_id"] for r in rows], [r["passed"] for r in rows])
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    return {
        "scores": scores,
        "statuses": statuses,
        "samples": len(rows),
        "wall_time_s": round(time.time() - start, 2),
    }


def evaluate(
    backend: Backend,
    tasks: list[str],
    out: Path,
    settings: EvalSettings,
    *,
    show_progress: bool = True,
) -> dict:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise UserError(f"unknown task {', '.join(unknown)}; available: {', '.join(TASKS)}")
    settings_json = {
        "backend": backend.kind,
        "model": backend.model_id,
        "n_samples": settings.n_samples,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_tokens,
        "seed": settings.seed,
        "limit": settings.limit,
        "stop": humaneval.STOP,
        "task_version": humaneval.TASK_VERSION,
        "execution": vars(settings.execution),
        "isolation": isolation_level(),
    }
    summary = {"settings": settings_json, "tasks": {}}
    with RunDir(out, stage="eval", config=settings_json) as run:
        for task in tasks:
            summary["tasks"][task] = eval_humaneval(
                backend, out / task, settings, show_progress=show_progress
            )
        run.extra["summary"] = summary["tasks"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

"""`syllabus eval`: generate with any backend, score, and write per-sample records and a summary.

Per-sample records go to `<out>/<task>/samples.jsonl` as they are scored, so a re-run skips
samples already done; `fingerprint.json` beside them holds what made them (the model's identity,
sampling, prompts, task version and problems, the task file's contents, execution semantics),
and a run with anything else is refused rather than scored with another run's samples.
`summary.json` records every setting that can move a score next to the scores; `evaluate`
returns the same content typed (`EvalSummary`), and `EvalSummary.read` loads it back.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from syllabus.backends import Backend, Completion
from syllabus.common.benchmarks import load_problems
from syllabus.errors import UserError
from syllabus.eval import humaneval, tasks
from syllabus.fingerprint import check_fingerprint, digest, path_digest
from syllabus.progress import progress_bar
from syllabus.sandbox import isolation_level
from syllabus.store import RowAppender, read_rows
from syllabus.store.manifest import RunDir

TASKS = ("humaneval", "humaneval-bpb", "bpb", "choice", "exact", "custom")
NEEDS_DATA = {"bpb", "choice", "exact", "custom"}
PROMPT_STYLES = ("completion", "chat")


@dataclass
class EvalSettings:
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 384
    seed: int = 0
    limit: int | None = None
    """Evaluate only the first N problems (smoke runs)."""
    prompt_style: str = "completion"
    """humaneval: "completion" continues the prompt (base models); "chat" asks an instruct
    model for the whole function in a code block (evalplus style)."""
    shots: int = 0
    """k-shot examples for choice and exact (taken from the start of the task's file)."""
    execution: humaneval.ExecutionSettings = field(default_factory=humaneval.ExecutionSettings)

    def __post_init__(self) -> None:
        if self.prompt_style not in PROMPT_STYLES:
            raise UserError(
                f"prompt style must be {' or '.join(PROMPT_STYLES)}, got {self.prompt_style!r}"
            )


@dataclass(frozen=True)
class Score:
    """One metric of one task: the mean over problems, its standard error, and how many
    problems it averages."""

    value: float
    stderr: float
    problems: int

    @classmethod
    def from_json(cls, data: dict) -> Score:
        return cls(value=data["value"], stderr=data["stderr"], problems=data["problems"])


@dataclass
class TaskResult:
    """What one task scored: metric name -> score (pass@1, bpb, acc_letter...)."""

    scores: dict[str, Score]
    samples: int
    wall_time_s: float
    statuses: dict[str, int] | None = None
    """humaneval only: executed samples by outcome (passed, failed, timeout...)."""

    def to_json(self) -> dict:
        data: dict = {"scores": {name: asdict(score) for name, score in self.scores.items()}}
        if self.statuses is not None:
            data["statuses"] = self.statuses
        return {**data, "samples": self.samples, "wall_time_s": self.wall_time_s}

    @classmethod
    def from_json(cls, data: dict) -> TaskResult:
        return cls(
            scores={name: Score.from_json(score) for name, score in data["scores"].items()},
            samples=data["samples"],
            wall_time_s=data["wall_time_s"],
            statuses=data.get("statuses"),
        )


@dataclass
class RecordedSettings:
    """Every setting that can move a score, as summary.json and the manifest record them."""

    backend: str
    """The backend's kind: embedded, openai, hf."""
    model: str
    identity: dict
    """What the backend says makes its answers (model file digest, endpoint, ...)."""
    n_samples: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    limit: int | None
    shots: int
    stop: list[str]
    prompt_style: str
    task_version: str
    execution: dict
    isolation: str
    tasks: dict[str, str | None]
    """Task name -> its data file (None for the bundled HumanEval)."""

    @classmethod
    def from_json(cls, data: dict) -> RecordedSettings:
        # A summary written before a setting was recorded reads it as None.
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass
class EvalSummary:
    """summary.json: the settings and each task's result, by task name."""

    settings: RecordedSettings
    tasks: dict[str, TaskResult]

    def to_json(self) -> dict:
        return {
            "settings": asdict(self.settings),
            "tasks": {name: result.to_json() for name, result in self.tasks.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> EvalSummary:
        return cls(
            settings=RecordedSettings.from_json(data["settings"]),
            tasks={name: TaskResult.from_json(task) for name, task in data["tasks"].items()},
        )

    @classmethod
    def read(cls, out: Path) -> EvalSummary:
        """The summary a `syllabus eval` run wrote into `out`."""
        path = out / "summary.json"
        if not path.exists():
            raise UserError(f"{out}: no summary.json (is this a `syllabus eval` output directory?)")
        return cls.from_json(json.loads(path.read_text()))


@dataclass
class ComparedMetric:
    """One (task, metric) across several evaluation outputs: each output's score, or None
    where that output lacks it."""

    task: str
    metric: str
    scores: list[Score | None]


def _scores(scores: dict[str, dict]) -> dict[str, Score]:
    return {name: Score.from_json(score) for name, score in scores.items()}


EXACT_STOP = ["\n\nQuestion:", "\nQuestion:"]
GENERATED = {"humaneval", "exact", "custom"}
EXECUTED = {"humaneval", "custom"}


def _by_key(rows: list[dict], key=lambda row: row["key"]) -> dict:
    """Samples by key (a sample redone after a kill: the later row)."""
    return {key(row): row for row in rows}


def _sample_key(row: dict) -> tuple[str, int]:
    return row["task_id"], row["sample"]


def eval_humaneval(
    backend: Backend,
    out: Path,
    settings: EvalSettings,
    *,
    show_progress: bool = True,
    problems_file: Path | None = None,
) -> TaskResult:
    """Generate `n_samples` completions per problem, execute them, and score pass@k (on
    HumanEval, or on the problems of a HumanEval-format file: `--task humaneval=FILE`)."""
    problems = load_problems(problems_file)[: settings.limit]
    by_id = {p.task_id: p for p in problems}
    samples_path = out / "samples.jsonl"
    start = time.time()
    with RowAppender(samples_path) as sink, progress_bar(show_progress) as progress:
        done = _by_key(sink.rows, _sample_key)
        jobs = [
            (p, i)
            for p in problems
            for i in range(settings.n_samples)
            if (p.task_id, i) not in done
        ]
        gen_task = progress.add_task("generate", total=len(jobs))
        chat = settings.prompt_style == "chat"
        sampling = {
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        requests = [
            backend.request(
                messages=[
                    {"role": "user", "content": humaneval.CHAT_INSTRUCTION.format(prompt=p.prompt)}
                ],
                seed=settings.seed + i,
                **sampling,
            )
            if chat
            else backend.request(
                prompt=p.prompt, stop=humaneval.STOP, seed=settings.seed + i, **sampling
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
            ""
            if not isinstance(c, Completion)
            else humaneval.chat_solution(c.text, p.entry_point)
            if chat
            else humaneval.truncate(c.text)
            for c, (p, _) in zip(completions, jobs, strict=True)
        ]
        exec_task = progress.add_task("execute", total=len(jobs))

        def record(index: int, result) -> None:
            problem, sample = jobs[index]
            completion = completions[index]
            row = {
                "task_id": problem.task_id,
                "sample": sample,
                "prompt": problem.prompt,
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
            sink.write(row)
            progress.advance(exec_task)

        humaneval.execute(
            by_id,
            [(p.task_id, t) for (p, _), t in zip(jobs, texts, strict=True)],
            settings.execution,
            on_result=record,
        )
    rows = [
        row
        for key, row in _by_key(read_rows(samples_path), _sample_key).items()
        if key[0] in by_id and key[1] < settings.n_samples
    ]
    scores = humaneval.score([r["task_id"] for r in rows], [r["passed"] for r in rows])
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    return TaskResult(
        scores=_scores(scores),
        statuses=statuses,
        samples=len(rows),
        wall_time_s=round(time.time() - start, 2),
    )


def _score_items(
    backend: Backend, out: Path, items, description: str, show_progress: bool
) -> list[dict]:
    """Score each (key, job) not already in samples.jsonl (`tasks.score_jobs`); all rows."""
    items = list(items)
    with RowAppender(out / "samples.jsonl") as sink, progress_bar(show_progress) as progress:
        done = _by_key(sink.rows)
        task = progress.add_task(
            description, total=len(items), completed=sum(k in done for k, _ in items)
        )
        # Several items' requests per backend call: a batching backend pads them together.
        todo = [(key, job) for key, job in items if key not in done]
        for key, row in tasks.score_jobs(backend, todo):
            done[key] = row
            sink.write(row)
            progress.advance(task)
    return [done[key] for key, _ in items]


def _generate_items(
    backend: Backend,
    out: Path,
    keyed_prompts,
    settings: EvalSettings,
    stop: list[str],
    to_row,
    show_progress: bool,
) -> list[dict]:
    """Generate for each (key, prompt, extra) not already done; `to_row(key, completion, extra)`."""
    path = out / "samples.jsonl"
    done = _by_key(read_rows(path))
    keyed_prompts = list(keyed_prompts)
    todo = [entry for entry in keyed_prompts if entry[0] not in done]
    requests = [
        backend.request(
            prompt=prompt,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            stop=stop,
            seed=settings.seed,
        )
        for _, prompt, _ in todo
    ]
    with progress_bar(show_progress) as progress:
        task = progress.add_task("generate", total=len(todo))
        completions = backend.generate_many(
            requests, on_result=lambda *_: progress.advance(task), return_exceptions=True
        )
    for result in completions:
        if isinstance(result, BaseException) and not isinstance(result, UserError):
            raise result
    rows = to_row([entry[0] for entry in todo], completions, [entry[2] for entry in todo])
    with RowAppender(path) as sink:
        for row in rows:
            done[row["key"]] = row
            sink.write(row)
    return [done[key] for key, _, _ in keyed_prompts]


def run_task(
    backend: Backend,
    name: str,
    data: Path | None,
    out: Path,
    settings: EvalSettings,
    show_progress: bool,
    fresh: bool = False,
) -> TaskResult:
    """Score one task into `out` (resuming the samples there if the same settings made them)."""
    start = time.time()
    samples = out / "samples.jsonl"
    if fresh:
        samples.unlink(missing_ok=True)
    check_fingerprint(
        out / "fingerprint.json",
        _made_by(backend, name, data, settings),
        has_results=samples.exists() and samples.stat().st_size > 0,
        what=f"eval {name}",
    )
    if name == "humaneval":
        return eval_humaneval(
            backend, out, settings, show_progress=show_progress, problems_file=data
        )
    if name == "humaneval-bpb":
        rows = _score_items(
            backend, out, tasks.humaneval_bpb_items(settings.limit), "humaneval-bpb", show_progress
        )
        scores = tasks.bpb_scores(rows)
    elif name == "bpb":
        rows = _score_items(
            backend, out, tasks.dataset_bpb_items(data, settings.limit), "bpb", show_progress
        )
        scores = tasks.bpb_scores(rows)
    elif name == "choice":
        rows = _score_items(
            backend,
            out,
            tasks.choice_items(data, settings.shots, settings.limit),
            "choice",
            show_progress,
        )
        scores = tasks.choice_scores(rows)
    elif name == "exact":
        rows = _generate_items(
            backend,
            out,
            tasks.exact_items(data, settings.shots, settings.limit),
            settings,
            EXACT_STOP,
            lambda keys, completions, extras: [
                tasks.exact_record(k, prompt, c, gold)
                for k, c, (prompt, gold) in zip(keys, completions, extras, strict=True)
            ],
            show_progress,
        )
        scores = tasks.exact_scores(rows)
    else:  # custom
        items = tasks.custom_items(data, settings.limit)
        by_key = dict(items)
        rows = _generate_items(
            backend,
            out,
            [(k, item["prompt"], item) for k, item in items],
            settings,
            [],
            lambda keys, completions, extras: tasks.custom_records(
                [(k, by_key[k]) for k in keys], completions, settings.execution.workers
            ),
            show_progress,
        )
        scores = tasks.custom_scores(rows)
    return TaskResult(
        scores=_scores(scores), samples=len(rows), wall_time_s=round(time.time() - start, 2)
    )


def _made_by(backend: Backend, name: str, data: Path | None, settings: EvalSettings) -> dict:
    """Everything that can change one sample of task `name`, for fingerprint.json. Not how many
    are asked for: --limit and --samples only choose which samples count (sample i has seed + i)."""
    made_by: dict = {"model": backend.model_id, "task": name, "backend": backend.identity}
    if name in ("humaneval", "humaneval-bpb"):
        problems = load_problems(data if name == "humaneval" else None)
        made_by["task_version"] = humaneval.TASK_VERSION
        made_by["problems"] = digest([dataclasses.asdict(p) for p in problems])
    elif data is not None:
        made_by["data"] = path_digest(data)
    if name in GENERATED:
        made_by["sampling"] = {
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
            "seed": settings.seed,
            "defaults": backend.defaults,
        }
    if name == "humaneval":
        chat = settings.prompt_style == "chat"
        made_by["prompt"] = {
            "style": settings.prompt_style,
            "template": humaneval.CHAT_INSTRUCTION if chat else None,
            "stop": None if chat else humaneval.STOP,
        }
    if name in ("choice", "exact"):
        made_by["shots"] = settings.shots
    if name == "exact":
        made_by["stop"] = EXACT_STOP
    if name in EXECUTED:
        # How many sandbox workers run at once changes no verdict.
        execution = dataclasses.asdict(settings.execution)
        execution.pop("workers", None)
        made_by["execution"] = {**execution, "isolation": isolation_level()}
    return made_by


def parse_task(spec: str) -> tuple[str, Path | None]:
    name, _, data = spec.partition("=")
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; available: {', '.join(TASKS)}")
    if name in NEEDS_DATA and not data:
        raise UserError(f"task {name} needs a file: --task {name}=PATH")
    path = Path(data) if data else None
    if path is not None and not path.exists():
        raise UserError(f"task {name}: {path}: no such file")
    return name, path


def evaluate(
    backend: Backend,
    task_specs: list[str],
    out: Path,
    settings: EvalSettings,
    *,
    show_progress: bool = True,
    fresh: bool = False,
) -> EvalSummary:
    """Run each task (`name` or `name=PATH`) against `backend`; writes summary.json to `out`.
    `fresh` discards the samples these tasks have in `out` instead of resuming them."""
    parsed = [parse_task(spec) for spec in task_specs]
    needs_logprobs = [name for name, _ in parsed if name in {"humaneval-bpb", "bpb", "choice"}]
    if needs_logprobs and "loglikelihood" not in backend.capabilities:
        raise UserError(
            f"{', '.join(needs_logprobs)} need log-probabilities of given text, which the {backend.kind} backend "
            f"({backend.endpoint}) cannot give; use a GGUF, Hugging Face or Syllabus model"
        )
    recorded = RecordedSettings(
        backend=backend.kind,
        model=backend.model_id,
        identity=backend.identity,
        n_samples=settings.n_samples,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
        limit=settings.limit,
        shots=settings.shots,
        stop=humaneval.STOP,
        prompt_style=settings.prompt_style,
        task_version=humaneval.TASK_VERSION,
        execution=asdict(settings.execution),
        isolation=isolation_level(),
        tasks={name: str(data) if data else None for name, data in parsed},
    )
    summary = EvalSummary(settings=recorded, tasks={})
    with RunDir(
        out, stage="eval", config=asdict(recorded), inputs={n: d for n, d in parsed if d}
    ) as run:
        for name, data in parsed:
            summary.tasks[name] = run_task(
                backend, name, data, out / name, settings, show_progress, fresh
            )
        run.extra["summary"] = summary.to_json()["tasks"]
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2))
    return summary


def compare(outputs: list[Path]) -> list[ComparedMetric]:
    """One row per (task, metric) found in any of `outputs`, with each output's score."""
    summaries = [EvalSummary.read(out) for out in outputs]
    keys = sorted(
        {(task, metric) for s in summaries for task, r in s.tasks.items() for metric in r.scores}
    )
    return [
        ComparedMetric(
            task=task,
            metric=metric,
            scores=[
                summary.tasks[task].scores.get(metric) if task in summary.tasks else None
                for summary in summaries
            ],
        )
        for task, metric in keys
    ]

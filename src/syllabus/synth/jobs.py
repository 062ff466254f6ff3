"""The types the synth engine and its generators share: a `Job` (one slot of the plan), the
`Context` a generator works in (teacher, sandbox, templates, counters) and the `Outcome` it
returns. They live below both, so imports run one way: engine -> generators -> jobs."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from syllabus.backends import Backend, Completion
from syllabus.errors import BackendError
from syllabus.sandbox import ExecResult, Limits, Sandbox
from syllabus.synth.config import SynthConfig
from syllabus.synth.parsing import Rejected
from syllabus.synth.prompts import Templates, Voice, job_seed
from syllabus.synth.topics import Topic
from syllabus.types import Record


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


def uses_grammar(config: SynthConfig, backend: Backend) -> bool:
    """Whether answers from `backend` are shaped by grammars: only llama.cpp takes GBNF, so
    "auto" means the embedded teacher; "on" also sends them to a server (llama-server)."""
    return "grammar" in backend.capabilities and (
        config.constrained == "on" or (config.constrained == "auto" and backend.kind == "embedded")
    )


@dataclass
class Context:
    """What a generator needs: the teachers, the sandbox, templates, and shared counters."""

    backend: Backend
    """The run's teacher: topic expansion, and every generator without a teacher of its own."""
    sandbox: Sandbox
    templates: Templates
    config: SynthConfig
    teachers: dict[str, Backend] = field(default_factory=dict)
    """Generator -> its own teacher (`[synth.<generator>.teacher]`)."""
    calls: Counter = field(default_factory=Counter)
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    teacher_errors: Counter = field(default_factory=Counter)
    consecutive_errors: int = 0
    last_error: str = ""
    _one_model_at_a_time: asyncio.Lock = field(default_factory=asyncio.Lock)

    def teacher(self, generator: str) -> Backend:
        return self.teachers.get(generator, self.backend)

    def constrained(self, generator: str) -> bool:
        return uses_grammar(self.config, self.teacher(generator))

    async def ask(
        self,
        job: Job,
        step: str,
        prompt: str,
        *,
        seed: int,
        max_tokens: int,
        grammar: str | None = None,
        complete: bool = False,
        stop: Sequence[str] = (),
    ) -> Completion | None:
        """One call to the job's teacher: a chat message, or with `complete` a plain prompt to
        continue (base models). None (counted) when the teacher fails after its retries."""
        backend = self.teacher(job.generator)
        overrides = {"stop": list(stop)} if stop else {}
        request = backend.request(
            messages=None if complete else [{"role": "user", "content": prompt}],
            prompt=prompt if complete else None,
            seed=seed,
            max_tokens=max_tokens,
            grammar=grammar,
            **overrides,
        )
        try:
            if backend.in_process and len(self._in_process_teachers()) > 1:
                # Two in-process models generating at once fight over the same cores.
                async with self._one_model_at_a_time:
                    answer = await backend.agenerate(request)
            else:
                answer = await backend.agenerate(request)
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

    def _in_process_teachers(self) -> set[int]:
        return {id(b) for b in (self.backend, *self.teachers.values()) if b.in_process}

    async def execute(self, program: str, limits: Limits, tests: Sequence[str] = ()) -> ExecResult:
        return await asyncio.to_thread(self.sandbox.run, program, limits=limits, tests=tests)


@dataclass
class Outcome:
    records: list[Record] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    """Reason -> count, one per failed attempt (or per dropped section)."""
    attempts: int = 0
    techniques: Counter = field(default_factory=Counter)
    """What got an accepted record through (exercise: first try, repair, best-of-n...)."""
    samples: list[dict] = field(default_factory=list)
    """A few raw rejected answers with their reason, kept for inspection (distilabel style)."""

    def reject(self, error: Rejected, raw: str = "") -> None:
        self.rejected[error.reason] += 1
        if len(self.samples) < 3:
            self.samples.append({"reason": error.reason, "detail": error.detail, "raw": raw[:2000]})

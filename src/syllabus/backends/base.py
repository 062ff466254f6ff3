"""One small interface for every model backend.

A backend turns a `Request` (chat messages or a plain prompt, plus sampling parameters) into a
`Completion` (text, finish reason, token usage, optional log-probs). Subclasses implement
`_generate` (and `_agenerate` where they are natively async); the base class adds the response
cache, capability checks and bounded concurrency for batches.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from syllabus.backends.cache import ResponseCache
from syllabus.config import StrictModel, at_least, between
from syllabus.errors import BackendError
from syllabus.fingerprint import digest

Capability = Literal[
    "chat", "complete", "logprobs", "json_schema", "grammar", "seed", "loglikelihood"
]


class SamplingParams(StrictModel):
    """How to sample. Recipes set defaults per backend; calls may override any field."""

    temperature: Annotated[float, between(0, 2)] = 0.7
    top_p: Annotated[float, between(0, 1)] = 1.0
    top_k: Annotated[int, at_least(0)] = 0
    max_tokens: Annotated[int, at_least(1)] = 256
    stop: list[str] = Field(default_factory=list)
    seed: int | None = 0
    logprobs: Annotated[int, between(0, 20)] = 0
    """Return log-probs of each generated token and this many top alternatives (0: none)."""
    json_schema: dict[str, Any] | None = None
    """Constrain the output to JSON matching this schema (where the backend can)."""
    grammar: str | None = None
    """Constrain the output with a GBNF grammar (llama.cpp backends)."""


class Message(StrictModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Request(StrictModel):
    messages: list[Message] | None = None
    prompt: str | None = None
    params: SamplingParams = Field(default_factory=SamplingParams)

    @model_validator(mode="after")
    def _one_input(self) -> Request:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a request has either messages (chat) or a prompt (completion)")
        return self

    @property
    def mode(self) -> str:
        return "chat" if self.messages is not None else "complete"


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LogLikelihood(BaseModel):
    """Log-probability of a continuation given its context, summed over its tokens."""

    logprob: float
    tokens: int
    greedy: bool
    """Whether every continuation token was the model's most likely one."""


class Completion(BaseModel):
    text: str
    finish_reason: str = "stop"
    usage: Usage = Field(default_factory=Usage)
    logprobs: list[TokenLogprob] | None = None
    model: str = ""
    latency_s: float = 0.0
    cached: bool = False
    usage_unreported: bool = False
    """The server reported no usage (a stream without it): completion tokens were counted as
    chunks and prompt tokens are unknown (0)."""


class Backend(ABC):
    """Base of all backends. `kind` names the implementation, `model_id` the weights."""

    kind: str = ""
    capabilities: frozenset[str] = frozenset()
    in_process: bool = True
    """Runs the model in this process: every call goes through one dedicated worker thread."""

    def __init__(
        self,
        *,
        defaults: SamplingParams | None = None,
        cache: ResponseCache | None = None,
        concurrency: int = 1,
    ):
        self.defaults = defaults or SamplingParams()
        self.cache = cache
        self.concurrency = concurrency
        self.calls = 0
        self.usage = Usage()
        self._usage_lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Names the weights for people (file name and content hash, served model name)."""

    @property
    def identity(self) -> dict[str, Any]:
        """Everything about this backend that can change an answer, for cache keys and result
        fingerprints: subclasses add the weights' content hash and their output-changing
        settings (chat format, context size, dtype, endpoint...)."""
        return {"kind": self.kind, "model": self.model_id}

    @property
    def fingerprint(self) -> str:
        return digest(self.identity)

    @property
    def endpoint(self) -> str:
        """Where the model runs, for error messages."""
        return self.model_id

    @abstractmethod
    def _generate(self, request: Request) -> Completion: ...

    async def _agenerate(self, request: Request) -> Completion:
        return await asyncio.get_running_loop().run_in_executor(
            self._worker_thread(), self._generate, request
        )

    def _worker_thread(self) -> ThreadPoolExecutor:
        # llama.cpp and torch parallelise with OpenMP, which keeps a spinning thread team per
        # calling thread; calls hopping between threads left old teams spinning on the cores and
        # ran 3x slower on 2 cores (measured). So in-process models always run on one thread.
        if self._worker is None:
            self._worker = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"syllabus-{self.kind}"
            )
        return self._worker

    # -- public API -----------------------------------------------------------------------------

    def request(
        self,
        *,
        messages: Sequence[Message | dict] | None = None,
        prompt: str | None = None,
        params: SamplingParams | None = None,
        **overrides: Any,
    ) -> Request:
        """Build a request on this backend's defaults, with `params` or keyword overrides."""
        base = params or self.defaults
        merged = base.model_copy(update=overrides) if overrides else base
        merged = SamplingParams.model_validate(merged.model_dump())
        msgs = (
            [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]
            if messages is not None
            else None
        )
        return Request(messages=msgs, prompt=prompt, params=merged)

    def chat(
        self,
        messages: Sequence[Message | dict],
        params: SamplingParams | None = None,
        **overrides: Any,
    ) -> Completion:
        return self.generate(self.request(messages=messages, params=params, **overrides))

    def complete(
        self, prompt: str, params: SamplingParams | None = None, **overrides: Any
    ) -> Completion:
        return self.generate(self.request(prompt=prompt, params=params, **overrides))

    def generate(self, request: Request) -> Completion:
        self._check(request)
        key = self.cache_key(request)
        if (hit := self._cached(key)) is not None:
            return hit
        start = time.perf_counter()
        if self.in_process:
            completion = self._worker_thread().submit(self._generate, request).result()
        else:
            completion = self._generate(request)
        return self._finish(key, completion, start)

    streams: bool = False
    """`stream` delivers text as it is generated (else in one piece at the end)."""

    def stream(self, request: Request, on_text: Callable[[str], None]) -> Completion:
        """Generate, calling `on_text(piece)` as text arrives; returns the whole Completion.

        Never cached: a stream is measured (time to first token) or served live. `latency_s` is
        the time the model spent on this request, without the wait for a busy worker thread.
        Safe to call from many threads at once (in-process models queue on their worker).
        """
        self._check(request)

        def timed() -> Completion:
            start = time.perf_counter()
            completion = self._stream(request, on_text)
            completion.latency_s = time.perf_counter() - start
            return completion

        completion = self._worker_thread().submit(timed).result() if self.in_process else timed()
        with self._usage_lock:
            self.calls += 1
            self.usage.prompt_tokens += completion.usage.prompt_tokens
            self.usage.completion_tokens += completion.usage.completion_tokens
        return completion

    def _stream(self, request: Request, on_text: Callable[[str], None]) -> Completion:
        """Backends that can stream override this; the fallback sends the text in one piece."""
        completion = self._generate(request)
        on_text(completion.text)
        return completion

    def loglikelihood(self, context: str, continuation: str) -> LogLikelihood:
        """log P(continuation | context); long inputs are scored in overlapping windows."""
        return self.loglikelihood_many([(context, continuation)])[0]

    def loglikelihood_many(self, pairs: Sequence[tuple[str, str]]) -> list[LogLikelihood]:
        """`loglikelihood` of each (context, continuation) pair, in order. A batching backend
        (hf) runs a shared context once and pads pairs together; the response cache answers
        the pairs it has."""
        if "loglikelihood" not in self.capabilities:
            raise BackendError(
                f"{self.kind} backend ({self.endpoint}) cannot give log-probabilities of given text; "
                "use the embedded or hf backend, or a server that returns prompt log-probs (vLLM)"
            )
        keys = [digest({"backend": self.fingerprint, "loglikelihood": [c, x]}) for c, x in pairs]
        results: list[LogLikelihood | None] = [None] * len(pairs)
        if self.cache is not None:
            for index, key in enumerate(keys):
                if (value := self.cache.get(key)) is not None:
                    results[index] = LogLikelihood.model_validate_json(value)
        todo = [index for index, result in enumerate(results) if result is None]
        if todo:
            batch = [pairs[index] for index in todo]
            if self.in_process:
                fresh = self._worker_thread().submit(self._loglikelihood_many, batch).result()
            else:
                fresh = self._loglikelihood_many(batch)
            for index, result in zip(todo, fresh, strict=True):
                results[index] = result
                if self.cache is not None:
                    self.cache.put(keys[index], result.model_dump_json())
        return results

    def _loglikelihood(self, context: str, continuation: str) -> LogLikelihood:
        raise NotImplementedError

    def _loglikelihood_many(self, pairs: list[tuple[str, str]]) -> list[LogLikelihood]:
        """One pair at a time, unless a backend batches them."""
        return [self._loglikelihood(context, continuation) for context, continuation in pairs]

    async def agenerate(self, request: Request) -> Completion:
        self._check(request)
        key = self.cache_key(request)
        if (hit := self._cached(key)) is not None:
            return hit
        start = time.perf_counter()
        completion = await self._agenerate(request)
        return self._finish(key, completion, start)

    def generate_many(
        self,
        requests: Sequence[Request],
        *,
        concurrency: int | None = None,
        on_result: Callable[[int, Completion | BaseException], None] | None = None,
        return_exceptions: bool = False,
    ) -> list[Completion | BaseException]:
        """Run requests with at most `concurrency` in flight; results come back in order.

        `on_result(i, completion)` is called as each finishes, so callers can write results to
        disk as they arrive rather than after the whole batch.
        """
        return asyncio.run(
            self._gather(requests, concurrency or self.concurrency, on_result, return_exceptions)
        )

    async def _gather(self, requests, concurrency, on_result, return_exceptions):
        semaphore = asyncio.Semaphore(max(1, concurrency))

        async def one(index: int, request: Request):
            async with semaphore:
                try:
                    result = await self.agenerate(request)
                except Exception as exc:
                    if on_result:
                        on_result(index, exc)
                    if return_exceptions:
                        return exc
                    raise
            if on_result:
                on_result(index, result)
            return result

        await self._open()
        try:
            return await asyncio.gather(
                *(one(i, r) for i, r in enumerate(requests)), return_exceptions=return_exceptions
            )
        finally:
            await self._close_async()

    async def _open(self) -> None:
        """Hook for backends holding per-event-loop resources (HTTP clients)."""

    async def _close_async(self) -> None:
        """Counterpart of `_open`."""

    def close(self) -> None:
        """Release weights or connections; subclasses extend it."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _check(self, request: Request) -> None:
        needs = {request.mode}
        params = request.params
        if params.logprobs:
            needs.add("logprobs")
        if params.json_schema is not None:
            needs.add("json_schema")
        if params.grammar is not None:
            needs.add("grammar")
        missing = needs - self.capabilities
        if missing:
            raise BackendError(
                f"{self.kind} backend ({self.endpoint}) cannot do {', '.join(sorted(missing))}; "
                f"it supports {', '.join(sorted(self.capabilities))}"
            )

    def cache_key(self, request: Request) -> str | None:
        # Unseeded sampling is meant to differ between calls: caching it would freeze one answer.
        if request.params.seed is None and request.params.temperature > 0:
            return None
        return digest({"backend": self.fingerprint, "request": request.model_dump(mode="json")})

    def _cached(self, key: str | None) -> Completion | None:
        if self.cache is None or key is None:
            return None
        value = self.cache.get(key)
        if value is None:
            return None
        completion = Completion.model_validate_json(value)
        completion.cached = True
        return completion

    def _finish(self, key: str | None, completion: Completion, start: float) -> Completion:
        completion.latency_s = time.perf_counter() - start
        with self._usage_lock:
            self.calls += 1
            self.usage.prompt_tokens += completion.usage.prompt_tokens
            self.usage.completion_tokens += completion.usage.completion_tokens
        if self.cache is not None and key is not None:
            self.cache.put(key, completion.model_dump_json())
        return completion

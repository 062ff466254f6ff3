"""Any OpenAI-compatible HTTP endpoint: vLLM, Ollama, llama.cpp server, hosted APIs.

Requests are async with bounded concurrency. Timeouts, connection errors, HTTP 429 and 5xx, and
malformed answers are retried with exponential backoff and jitter (honouring Retry-After); the
last failure becomes a `BackendError` naming the endpoint and what went wrong. The API key is
read from the environment variable the recipe names and never stored.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from syllabus.backends.base import Backend, Completion, Request, SamplingParams, Usage
from syllabus.backends.cache import ResponseCache
from syllabus.backends.oai_format import chat_logprobs, completion_logprobs
from syllabus.errors import BackendError, UserError

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAIBackend(Backend):
    kind = "openai"
    in_process = False
    capabilities = frozenset({"chat", "complete", "logprobs", "json_schema", "grammar", "seed"})

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        json_mode: str = "json_schema",
        defaults: SamplingParams | None = None,
        cache: ResponseCache | None = None,
    ):
        super().__init__(defaults=defaults, cache=cache, concurrency=concurrency)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.json_mode = json_mode
        self._headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise UserError(
                    f"environment variable {api_key_env} (the recipe's api_key_env) is not set; export it with your API key"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self._client: httpx.AsyncClient | None = None
        self.retries = 0

    @property
    def model_id(self) -> str:
        return f"{self.base_url}#{self.model}"

    @property
    def identity(self) -> dict[str, Any]:
        # What the server does with a model name is out of sight: the name and the endpoint are
        # the model's identity, and json_mode changes how constrained output is asked for.
        return {
            "kind": self.kind,
            "base_url": self.base_url,
            "model": self.model,
            "json_mode": self.json_mode,
        }

    @property
    def endpoint(self) -> str:
        return self.base_url

    # One client per event loop: `generate_many` opens it for a whole batch.
    async def _open(self) -> None:
        limits = httpx.Limits(
            max_connections=max(1, self.concurrency),
            max_keepalive_connections=max(1, self.concurrency),
        )
        self._client = httpx.AsyncClient(
            timeout=self.timeout_s, limits=limits, headers=self._headers
        )

    async def _close_async(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _generate(self, request: Request) -> Completion:
        return asyncio.run(self._agenerate(request))

    def _payload(self, request: Request) -> tuple[str, dict[str, Any]]:
        params = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.top_k:
            body["top_k"] = (
                params.top_k
            )  # vLLM, llama.cpp and Ollama accept it; hosted APIs ignore it
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
        if params.grammar is not None:
            body["grammar"] = params.grammar
        if request.mode == "chat":
            body["messages"] = [m.model_dump() for m in request.messages]
            if params.logprobs:
                body.update(logprobs=True, top_logprobs=params.logprobs)
            path = "/chat/completions"
        else:
            body["prompt"] = request.prompt
            if params.logprobs:
                body["logprobs"] = params.logprobs
            path = "/completions"
        if params.json_schema is not None:
            if self.json_mode == "json_schema":  # OpenAI, vLLM, Ollama, llama-server
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": params.json_schema, "strict": True},
                }
            else:  # llama-cpp-python's server and llama-server
                body["response_format"] = {"type": "json_object", "schema": params.json_schema}
        return path, body

    streams = True

    def _stream(self, request: Request, on_text: Callable[[str], None]) -> Completion:
        """Server-sent events with `stream_options.include_usage`. Failures before the first
        piece of text are retried like any call; after it, text already delivered cannot be
        taken back, so the failure is a BackendError at once. Its own client per call, so many
        threads may stream at the same time."""
        path, body = self._payload(request)
        body.update(stream=True, stream_options={"include_usage": True})
        url = self.base_url + path
        last = ""
        for attempt in range(self.max_retries + 1):
            pieces: list[str] = []
            try:
                return self._stream_once(url, body, request.mode, pieces, on_text)
            except _Retryable as exc:
                if pieces:
                    raise BackendError(
                        f"{url}: stream broke after {len(pieces)} pieces: {exc}"
                    ) from None
                last = str(exc)
                if attempt == self.max_retries:
                    break
                self.retries += 1
                time.sleep(self.retry_delay(exc.retry_after, attempt))
        raise BackendError(
            f"{url}: gave up after {self.max_retries + 1} attempts; last error: {last}"
        )

    def _stream_once(self, url, body, mode, pieces: list[str], on_text) -> Completion:
        logprob_chunks: list[dict] = []
        usage: dict = {}
        finish, model = "stop", self.model
        try:
            with (
                httpx.Client(timeout=self.timeout_s, headers=self._headers) as client,
                client.stream("POST", url, json=body) as response,
            ):
                if response.status_code in RETRYABLE_STATUS:
                    response.read()
                    raise _Retryable(
                        f"HTTP {response.status_code} {response.text[:200]!r}",
                        _retry_after(response),
                    )
                if response.status_code >= 400:
                    response.read()
                    raise BackendError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators and SSE comments (keep-alive pings)
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except json.JSONDecodeError:
                        raise _Retryable(f"malformed stream chunk: {data[:200]!r}") from None
                    usage = chunk.get("usage") or usage
                    model = chunk.get("model") or model
                    for choice in chunk.get("choices") or []:
                        piece = (
                            (choice.get("delta") or {}).get("content")
                            if mode == "chat"
                            else choice.get("text")
                        )
                        if piece:
                            pieces.append(piece)
                            on_text(piece)
                        if choice.get("logprobs"):
                            logprob_chunks.append(choice["logprobs"])
                        finish = choice.get("finish_reason") or finish
        except httpx.TimeoutException:
            raise _Retryable(f"timed out after {self.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from None
        if mode == "chat":
            merged = {"content": [item for c in logprob_chunks for item in c.get("content") or []]}
            logprobs = chat_logprobs(merged)
        else:
            merged = {
                key: [item for c in logprob_chunks for item in c.get(key) or []]
                for key in ("tokens", "token_logprobs", "top_logprobs")
            }
            logprobs = completion_logprobs(merged)
        if not usage:
            # Servers that ignore stream_options.include_usage (llama-cpp-python's) send one
            # chunk per token: count them; the prompt's tokens stay unknown (0, flagged).
            return Completion(
                text="".join(pieces),
                finish_reason=finish,
                usage=Usage(completion_tokens=len(pieces)),
                logprobs=logprobs,
                model=model,
                usage_unreported=True,
            )
        return Completion(
            text="".join(pieces),
            finish_reason=finish,
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens") or 0,
                completion_tokens=usage.get("completion_tokens") or 0,
            ),
            logprobs=logprobs,
            model=model,
        )

    async def _agenerate(self, request: Request) -> Completion:
        if self._client is None:  # a single call outside `generate_many`
            await self._open()
            try:
                return await self._with_retries(request)
            finally:
                await self._close_async()
        return await self._with_retries(request)

    def retry_delay(self, retry_after: float | None, attempt: int) -> float:
        """Seconds to wait before retry `attempt`: the server's Retry-After, else exponential
        backoff with jitter; never more than max_backoff_s (a server asking for an hour must not
        stall the whole run for an hour)."""
        if retry_after is None:
            retry_after = self.backoff_s * 2**attempt * random.uniform(0.5, 1.5)
        return min(retry_after, self.max_backoff_s)

    async def _with_retries(self, request: Request) -> Completion:
        path, body = self._payload(request)
        url = self.base_url + path
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return await self._post(url, body, request.mode)
            except _Retryable as exc:
                last = str(exc)
                if attempt == self.max_retries:
                    break
                self.retries += 1
                await asyncio.sleep(self.retry_delay(exc.retry_after, attempt))
        raise BackendError(
            f"{url}: gave up after {self.max_retries + 1} attempts; last error: {last}"
        )

    async def _post(self, url: str, body: dict[str, Any], mode: str) -> Completion:
        try:
            response = await self._client.post(url, json=body)
        except httpx.TimeoutException:
            raise _Retryable(f"timed out after {self.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from None
        if response.status_code in RETRYABLE_STATUS:
            raise _Retryable(
                f"HTTP {response.status_code} {response.text[:200]!r}", _retry_after(response)
            )
        if response.status_code >= 400:
            hint = (
                " (check the API key in the environment variable named by api_key_env)"
                if response.status_code in (401, 403)
                else ""
            )
            raise BackendError(f"{url}: HTTP {response.status_code}{hint}: {response.text[:300]}")
        try:
            data = response.json()
            choice = data["choices"][0]
            if mode == "chat":
                text = choice["message"].get("content") or ""
                logprobs = chat_logprobs(choice.get("logprobs"))
            else:
                text = choice["text"]
                logprobs = completion_logprobs(choice.get("logprobs"))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise _Retryable(
                f"malformed response (not an OpenAI completion): {response.text[:200]!r}"
            ) from None
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens") or 0,
                completion_tokens=usage.get("completion_tokens") or 0,
            ),
            logprobs=logprobs,
            model=data.get("model") or self.model,
        )

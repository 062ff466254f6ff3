"""GGUF models run in-process by llama-cpp-python (the packaged defaults or any .gguf path)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np

from syllabus.backends.base import (
    Backend,
    Completion,
    LogLikelihood,
    Request,
    SamplingParams,
    Usage,
)
from syllabus.backends.cache import ResponseCache
from syllabus.backends.models import resolve_model
from syllabus.backends.oai_format import chat_logprobs, completion_logprobs
from syllabus.backends.scoring import score_tokens
from syllabus.errors import BackendError
from syllabus.fingerprint import file_digest


@contextlib.contextmanager
def _quiet_stderr():
    """llama.cpp prints its load log on fd 2 from C; hide it unless it is needed."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def avoid_amx_repack() -> None:
    """Keep llama.cpp off its AMX weight repacking on CPUs that have AMX.

    On this project's Xeon machines (amx_tile, amx_int8) llama.cpp 0.3.36 repacks quantized
    weights into AMX buffers and then crashes with SIGSEGV in llama_decode on the first token
    (SmolLM2 Q4_1, q8_0 exports). llama-cpp-python has no argument for `use_extra_bufts`, so the
    default model parameters it starts from are wrapped to turn it off; plain CPU buffers run.
    """
    import llama_cpp.llama_cpp as bindings

    if getattr(bindings.llama_model_default_params, "_syllabus_no_amx", False):
        return
    try:
        with open("/proc/cpuinfo") as handle:
            has_amx = "amx_tile" in handle.read()
    except OSError:
        has_amx = False
    if not has_amx:
        return
    original = bindings.llama_model_default_params

    def default_params():
        params = original()
        params.use_extra_bufts = False
        return params

    default_params._syllabus_no_amx = True
    bindings.llama_model_default_params = default_params


def _gathered(
    chunks, on_text: Callable[[str], None], llm, *, chat: bool, prompt: str | None = None
) -> dict:
    """A streamed llama.cpp answer put back in the shape of a non-streamed one, calling
    `on_text` with each piece on the way. Streams carry no usage: llama.cpp yields one chunk
    per generated token; a prompt is tokenized as llama.cpp does, and a chat prompt (formatted
    inside llama.cpp) is what its context holds besides the answer (the last token of an answer
    cut by max_tokens or a stop string is never evaluated: +-1 for stop strings)."""
    pieces: list[str] = []
    logprobs: dict = (
        {"content": []} if chat else {"tokens": [], "token_logprobs": [], "top_logprobs": []}
    )
    finish, generated = "stop", 0
    for chunk in chunks:
        choice = chunk["choices"][0]
        if choice.get("finish_reason"):
            finish = choice["finish_reason"]
        delta = choice.get("delta") or {}
        if (chat and "content" not in delta) or (not chat and choice.get("finish_reason")):
            continue
        generated += 1
        piece = delta.get("content") if chat else choice.get("text")
        if piece:
            pieces.append(piece)
            on_text(piece)
        for key, values in (choice.get("logprobs") or {}).items():
            if key in logprobs and values:
                logprobs[key].extend(values)
    text = "".join(pieces)
    choice = {"finish_reason": finish, "logprobs": logprobs}
    choice.update({"message": {"content": text}} if chat else {"text": text})
    if prompt is not None:
        prompt_tokens = len(llm.tokenize(prompt.encode("utf-8"), special=True))
    else:
        prompt_tokens = max(0, llm.n_tokens - generated + (finish == "length"))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": generated}
    return {"choices": [choice], "usage": usage}


class EmbeddedBackend(Backend):
    kind = "embedded"
    streams = True

    def __init__(
        self,
        model: str = "smollm2",
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        chat_format: str | None = None,
        defaults: SamplingParams | None = None,
        cache: ResponseCache | None = None,
    ):
        super().__init__(defaults=defaults, cache=cache, concurrency=1)
        self.path, self.packaged = resolve_model(model)
        self.name = model
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.chat_format = chat_format
        # The whole file is hashed (once per file version; the digest is cached): two GGUFs alike
        # in size and in their first and last MiB are still two models.
        self.weights = file_digest(self.path)
        self.llama_cpp_version = metadata.version("llama_cpp_python")
        self._llm: Any = None
        self._logits_all = False
        # A llama.cpp context is not thread-safe: one call at a time per backend.
        self._lock = threading.Lock()
        self._load(logits_all=False)
        has_template = (
            bool(self._llm.metadata.get("tokenizer.chat_template")) or chat_format is not None
        )
        caps = {"complete", "logprobs", "json_schema", "grammar", "seed", "loglikelihood"}
        if has_template:
            caps.add("chat")
        self.capabilities = frozenset(caps)

    @property
    def model_id(self) -> str:
        return f"{self.path.name}:{self.weights[:16]}"

    @property
    def identity(self) -> dict[str, Any]:
        # n_ctx is also the scoring window for long inputs; chat_format turns messages into the
        # prompt; llama.cpp's version changes kernels and chat-template handling.
        return {
            "kind": self.kind,
            "weights": self.weights,
            "n_ctx": self.n_ctx,
            "chat_format": self.chat_format,
            "llama_cpp": self.llama_cpp_version,
        }

    @property
    def endpoint(self) -> str:
        return str(self.path)

    def _load(self, *, logits_all: bool) -> None:
        from llama_cpp import Llama

        avoid_amx_repack()
        self._llm = None
        try:
            with _quiet_stderr():
                self._llm = Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    logits_all=logits_all,
                    chat_format=self.chat_format,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.path}: llama.cpp could not load the model ({exc})") from None
        self._logits_all = logits_all

    def _check(self, request: Request) -> None:
        if request.mode == "chat" and "chat" not in self.capabilities:
            raise BackendError(
                f"embedded model '{self.name}' ({self.path.name}) has no chat template: it is a base model. "
                "Send a plain prompt (completion) or set chat_format in the recipe"
            )
        super()._check(request)

    def _stream(self, request: Request, on_text: Callable[[str], None]) -> Completion:
        return self._generate(request, on_text)

    def _generate(
        self, request: Request, on_text: Callable[[str], None] | None = None
    ) -> Completion:
        from llama_cpp import LlamaGrammar

        params = request.params
        kwargs: dict[str, Any] = {
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "stop": params.stop or None,
            "seed": params.seed,
        }
        with self._lock:
            if params.json_schema is not None:
                try:
                    kwargs["grammar"] = LlamaGrammar.from_json_schema(
                        json.dumps(params.json_schema), verbose=False
                    )
                except (ValueError, RuntimeError, KeyError, TypeError) as exc:
                    raise BackendError(
                        f"json_schema cannot be turned into a grammar: {exc}"
                    ) from None
                self._validate_grammar(kwargs["grammar"]._grammar)
            elif params.grammar is not None:
                self._validate_grammar(params.grammar)
                kwargs["grammar"] = LlamaGrammar.from_string(params.grammar, verbose=False)
            if params.logprobs and not self._logits_all:
                self._load(logits_all=True)
            try:
                if request.mode == "chat":
                    if params.logprobs:
                        kwargs.update(logprobs=True, top_logprobs=params.logprobs)
                    out = self._llm.create_chat_completion(
                        messages=[m.model_dump() for m in request.messages],
                        stream=on_text is not None,
                        **kwargs,
                    )
                    if on_text is not None:
                        out = _gathered(out, on_text, self._llm, chat=True)
                    choice = out["choices"][0]
                    text = choice["message"].get("content") or ""
                    logprobs = chat_logprobs(choice.get("logprobs"))
                else:
                    if params.logprobs:
                        kwargs["logprobs"] = params.logprobs
                    out = self._llm.create_completion(
                        prompt=request.prompt, stream=on_text is not None, **kwargs
                    )
                    if on_text is not None:
                        out = _gathered(out, on_text, self._llm, chat=False, prompt=request.prompt)
                    choice = out["choices"][0]
                    text = choice["text"]
                    logprobs = completion_logprobs(choice.get("logprobs"))
            except ValueError as exc:
                # llama.cpp raises ValueError for prompts longer than the context window.
                raise BackendError(f"{self.path.name}: {exc}") from None
        usage = out.get("usage") or {}
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
            ),
            logprobs=logprobs,
            model=self.model_id,
        )

    def _loglikelihood(self, context: str, continuation: str) -> LogLikelihood:
        with self._lock:
            if not self._logits_all:
                self._load(logits_all=True)
            llm = self._llm
            # Context and continuation are tokenized apart (as lm-eval-harness does), so the
            # continuation's tokens do not depend on how the context happens to end.
            start = llm.tokenize(context.encode(), add_bos=True, special=False) if context else []
            if not start:
                bos = llm.token_bos()
                start = [bos if bos >= 0 else llm.token_eos()]
            tokens = start + llm.tokenize(continuation.encode(), add_bos=False, special=False)

            def logits_for(ids):
                llm.reset()
                llm.eval(list(ids))
                return np.array(llm.scores[: len(ids)])

            total, count, greedy = score_tokens(tokens, len(start), self.n_ctx, logits_for)
        return LogLikelihood(logprob=total, tokens=count, greedy=greedy)

    def _validate_grammar(self, grammar: str) -> None:
        """llama.cpp crashes the process on a grammar it cannot parse; try it on its own first."""
        import llama_cpp

        with _quiet_stderr():
            sampler = llama_cpp.llama_sampler_init_grammar(
                self._llm._model.vocab, grammar.encode(), b"root"
            )
        if not sampler:
            raise BackendError(
                "invalid GBNF grammar: llama.cpp could not parse it (check brackets, quotes and the 'root' rule)"
            )
        llama_cpp.llama_sampler_free(sampler)

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

"""A candidate: a backend plus how it is prompted (style, system prompt, retrieval, format).

The same `Candidate.request` builds the requests `syllabus portfolio` measures and the ones
`syllabus route` serves, so what was measured is what is deployed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syllabus.backends import Backend, Message, Request
from syllabus.backends.specs import backend_for
from syllabus.common.retrieval import Retriever
from syllabus.portfolio.config import CandidateConfig, resolve


def transcript(messages: list[dict[str, str]]) -> str:
    """Chat messages as plain text for a completion-style model (a base model has no template)."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


class Candidate:
    def __init__(self, config: CandidateConfig, base: Path):
        self.config = config
        self.name = config.name
        self.base = base
        self.backend: Backend | None = None
        self._retriever = None

    def open(self) -> Candidate:
        """Load the model (or connect). No response cache: a cached answer would fake latency."""
        if self.backend is None:
            self.backend = backend_for(
                self.config.model,
                api_model=self.config.api_model,
                api_key_env=self.config.api_key_env,
                cache=False,
            )
            if hasattr(self.backend, "max_retries"):  # an HTTP endpoint
                self.backend.max_retries = self.config.max_retries
                self.backend.timeout_s = self.config.timeout_s
        if self.config.retrieval is not None and self._retriever is None:
            # The BM25 retriever synth grounds its textbooks with, over the candidate's corpus.
            retrieval = self.config.retrieval
            # Every labelled example is a passage, however short (a date and its answer).
            self._retriever = Retriever(
                resolve(self.base, retrieval.corpus),
                retrieval.passages,
                retrieval.max_chars,
                min_chars=1,
                what=f"candidates.{self.config.name}.retrieval.corpus",
            )
        return self

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def _with_context(self, text: str) -> str:
        if self._retriever is None:
            return text
        passages = self._retriever.passages_for(text)
        return self.config.retrieval.template.format(passages="\n\n".join(passages), prompt=text)

    def request(
        self,
        *,
        prompt: str | None = None,
        messages: list[dict[str, str]] | None = None,
        **params: Any,
    ) -> Request:
        """The request for a prompt (completion) or messages (chat), in this candidate's style;
        `params` are sampling parameters (max_tokens, temperature, seed, stop, logprobs)."""
        if self.config.json_schema is not None:
            params["json_schema"] = self.config.json_schema
        if self.config.grammar is not None:
            params["grammar"] = self.config.grammar
        if self.config.prompt_style == "completion":
            text = prompt if prompt is not None else transcript(messages)
            return self.backend.request(prompt=self._with_context(text), **params)
        chat = (
            [dict(m) for m in messages]
            if messages is not None
            else [{"role": "user", "content": prompt}]
        )
        for message in reversed(chat):  # retrieval looks up the latest question
            if message["role"] == "user":
                message["content"] = self._with_context(message["content"])
                break
        if self.config.system_prompt is not None:
            chat = [m for m in chat if m["role"] != "system"]
            chat.insert(0, {"role": "system", "content": self.config.system_prompt})
        return self.backend.request(messages=[Message(**m) for m in chat], **params)

    def __enter__(self) -> Candidate:
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()

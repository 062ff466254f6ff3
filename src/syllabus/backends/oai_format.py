"""Parsing the OpenAI response format, which llama-cpp-python and the HTTP servers all use."""

from __future__ import annotations

from syllabus.backends.base import TokenLogprob


def chat_logprobs(data: dict | None) -> list[TokenLogprob] | None:
    """`choices[0].logprobs` of a chat completion: {content: [{token, logprob, top_logprobs}]}."""
    if not data or not data.get("content"):
        return None
    return [
        TokenLogprob(
            token=item["token"],
            logprob=item["logprob"],
            top={alt["token"]: alt["logprob"] for alt in item.get("top_logprobs") or []},
        )
        for item in data["content"]
    ]


def completion_logprobs(data: dict | None) -> list[TokenLogprob] | None:
    """`choices[0].logprobs` of a text completion: parallel lists tokens/token_logprobs/top_logprobs."""
    if not data or not data.get("tokens"):
        return None
    tops = data.get("top_logprobs") or [None] * len(data["tokens"])
    return [
        TokenLogprob(
            token=token,
            logprob=logprob if logprob is not None else float("nan"),
            top=dict(top or {}),
        )
        for token, logprob, top in zip(data["tokens"], data["token_logprobs"], tops, strict=False)
    ]

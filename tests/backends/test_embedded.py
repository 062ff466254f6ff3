"""The `embedded` backend with the GGUF models that ship in PyPI packages."""

from __future__ import annotations

import json

import pytest

from syllabus.backends import ResponseCache, resolve_model
from syllabus.backends.embedded import EmbeddedBackend
from syllabus.errors import BackendError, UserError


def test_smollm2_chat_generates_text(smollm2):
    out = smollm2.chat(
        [{"role": "user", "content": "What is a Python list? One sentence."}],
        max_tokens=24,
        temperature=0.0,
    )
    assert len(out.text.split()) >= 3
    assert out.usage.completion_tokens > 0 and out.usage.prompt_tokens > 5
    assert out.model.startswith("SmolLM2-135M-Instruct.Q4_1.gguf:")


def test_completion_respects_max_tokens_and_stop(smollm2):
    out = smollm2.complete("1, 2, 3, 4,", max_tokens=6, temperature=0.0)
    assert out.usage.completion_tokens <= 6
    stopped = smollm2.complete("def square(x):\n", max_tokens=40, temperature=0.0, stop=["return"])
    assert "return" not in stopped.text


def test_seed_makes_sampling_reproducible(smollm2):
    prompt = [{"role": "user", "content": "Invent a name for a cat."}]
    a = smollm2.chat(prompt, max_tokens=12, temperature=1.2, seed=3)
    b = smollm2.chat(prompt, max_tokens=12, temperature=1.2, seed=3)
    assert a.text == b.text
    others = {
        smollm2.chat(prompt, max_tokens=12, temperature=1.2, seed=s).text for s in range(4, 8)
    }
    assert len(others | {a.text}) > 1  # different seeds sample differently


def test_logprobs(smollm2):
    out = smollm2.complete("The opposite of hot is", max_tokens=3, temperature=0.0, logprobs=5)
    assert out.logprobs is not None and len(out.logprobs) == out.usage.completion_tokens
    first = out.logprobs[0]
    assert first.logprob <= 0 and len(first.top) == 5
    # Greedy decoding picks the most likely token.
    assert first.logprob == pytest.approx(max(first.top.values()), abs=1e-3)


def test_json_schema_constrains_output(smollm2):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    out = smollm2.chat(
        [{"role": "user", "content": "Give a person's name and age as JSON."}],
        max_tokens=60,
        temperature=0.0,
        json_schema=schema,
    )
    data = json.loads(out.text)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_grammar_constrains_output(smollm2):
    out = smollm2.complete(
        "Is water wet? Answer:", max_tokens=4, temperature=0.0, grammar='root ::= " yes" | " no"'
    )
    assert out.text in {" yes", " no"}


def test_bad_grammar_is_a_clear_error(smollm2):
    with pytest.raises(BackendError, match="grammar"):
        smollm2.complete("x", max_tokens=2, grammar="root ::= ( unclosed")


def test_cache_hits_and_counts(smollm2_path, tmp_path):
    cache = ResponseCache(tmp_path / "r.sqlite")
    backend = EmbeddedBackend(str(smollm2_path), n_ctx=512, cache=cache)
    first = backend.complete("Once upon a time", max_tokens=8, temperature=0.8, seed=1)
    second = backend.complete("Once upon a time", max_tokens=8, temperature=0.8, seed=1)
    assert second.cached and second.text == first.text
    assert cache.hits == 1 and backend.calls == 1
    unseeded = [
        backend.complete("Once upon a time", max_tokens=8, temperature=0.8, seed=None)
        for _ in range(2)
    ]
    assert not any(out.cached for out in unseeded)  # unseeded sampling is never frozen by the cache
    backend.close()


@pytest.mark.slow
def test_gemma_base_model_completes(tmp_path_factory):
    from syllabus.backends import PACKAGED_MODELS

    with EmbeddedBackend("gemma3-270m", n_ctx=512) as gemma:
        out = gemma.complete("The three primary colours are red,", max_tokens=8, temperature=0.0)
        assert out.text.strip()
        assert "chat" not in gemma.capabilities and not PACKAGED_MODELS["gemma3-270m"].chat
        with pytest.raises(BackendError, match="base model"):
            gemma.chat([{"role": "user", "content": "hi"}])


def test_missing_or_bad_model_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        resolve_model(str(tmp_path / "nope.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model at all")
    with pytest.raises(UserError, match="not a GGUF file"):
        resolve_model(str(fake))

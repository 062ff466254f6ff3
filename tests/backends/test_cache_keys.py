"""The response cache never hands one model's (or one setting's) answer to another.

Keys hold the backend's fingerprint: the weights' full content hash and every setting that can
change an answer (chat format, context size, dtype, endpoint and model name)."""

from __future__ import annotations

import shutil

import pytest

from syllabus.backends import ResponseCache
from syllabus.backends.embedded import EmbeddedBackend
from syllabus.backends.openai import OpenAIBackend

PROMPT = "def add(a, b):"


def _flip_a_middle_byte(path):
    """Change one weight in the middle of the file: same size, same first and last MiB."""
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        # Bit 0 of any byte of a Q4_1 block is a quant bit or a low fp16 mantissa bit: the
        # model still loads and runs, it is just a different model.
        handle.write(bytes([byte[0] ^ 0x01]))


def test_gguf_files_alike_in_size_and_ends_do_not_share_answers(smollm2_path, tmp_path):
    other = tmp_path / smollm2_path.name
    shutil.copyfile(smollm2_path, other)
    _flip_a_middle_byte(other)
    cache = ResponseCache(tmp_path / "responses.sqlite")
    original = EmbeddedBackend(str(smollm2_path), n_ctx=512, cache=cache)
    first = original.complete(PROMPT, max_tokens=4, temperature=0.0)
    original.close()
    edited = EmbeddedBackend(str(other), n_ctx=512, cache=cache)
    try:
        second = edited.complete(PROMPT, max_tokens=4, temperature=0.0)
        assert edited.model_id != original.model_id
    finally:
        edited.close()
    assert not first.cached and not second.cached


def test_chat_format_and_context_size_are_part_of_the_key(smollm2_path, tmp_path):
    cache = ResponseCache(tmp_path / "responses.sqlite")
    default = EmbeddedBackend(str(smollm2_path), n_ctx=512, cache=cache)
    request = default.request(messages=[{"role": "user", "content": "Hi"}], temperature=0.0)
    keys = {default.cache_key(request)}
    default.close()
    for options in ({"n_ctx": 1024}, {"n_ctx": 512, "chat_format": "chatml"}):
        backend = EmbeddedBackend(str(smollm2_path), cache=cache, **options)
        keys.add(backend.cache_key(request))
        backend.close()
    assert len(keys) == 3


def test_loglikelihood_keys_hold_the_context_size(smollm2_path, tmp_path):
    # bpb is scored in windows of n_ctx tokens: another window is another answer.
    cache = ResponseCache(tmp_path / "responses.sqlite")
    text = "x = 1\n" * 50  # ~200 tokens: longer than the small window
    small = EmbeddedBackend(str(smollm2_path), n_ctx=128, cache=cache)
    a = small.loglikelihood("", text)
    small.close()
    large = EmbeddedBackend(str(smollm2_path), n_ctx=512, cache=cache)
    b = large.loglikelihood("", text)
    large.close()
    assert cache.hits == 0 and a.logprob != b.logprob


@pytest.mark.slow
def test_hf_dtype_is_part_of_the_key(tmp_path):
    pytest.importorskip("transformers")
    from syllabus.backends.hf import HFBackend
    from tests.backends.test_hf import save_tiny_llama

    path = save_tiny_llama(tmp_path / "tiny", chat_template=None)
    float32 = HFBackend(path, dtype="float32")
    bfloat16 = HFBackend(path, dtype="bfloat16")
    request = float32.request(prompt=PROMPT, temperature=0.0)
    assert float32.cache_key(request) != bfloat16.cache_key(request)
    # Same directory, new weights: a new key too.
    (path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes()[:-1] + b"\0")
    retrained = HFBackend(path, dtype="float32")
    assert retrained.cache_key(request) != float32.cache_key(request)


def test_openai_keys_hold_the_endpoint_model_and_json_mode():
    request = OpenAIBackend("http://127.0.0.1:1/v1", "m").request(prompt=PROMPT)
    keys = {
        OpenAIBackend(url, model, json_mode=mode).cache_key(request)
        for url, model, mode in [
            ("http://127.0.0.1:1/v1", "m", "json_schema"),
            ("http://127.0.0.1:2/v1", "m", "json_schema"),
            ("http://127.0.0.1:1/v1", "n", "json_schema"),
            ("http://127.0.0.1:1/v1", "m", "json_object"),
        ]
    }
    assert len(keys) == 4

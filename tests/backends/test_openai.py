"""The `openai` backend against a real llama.cpp server, and against a server that misbehaves."""

from __future__ import annotations

import time

import pytest

from syllabus.backends import ResponseCache
from syllabus.backends.openai import OpenAIBackend
from syllabus.errors import BackendError, UserError
from tests.backends.fault_server import FaultServer


def fast_backend(url: str, **kwargs) -> OpenAIBackend:
    options = {
        "model": "fake",
        "max_retries": 3,
        "backoff_s": 0.05,
        "max_backoff_s": 0.2,
        "timeout_s": 5.0,
    }
    options.update(kwargs)
    return OpenAIBackend(url, **options)


# -- against llama-cpp-python's OpenAI-compatible server ------------------------------------------


def test_chat_against_llama_cpp_server(llama_server):
    backend = OpenAIBackend(llama_server, "smollm2")
    out = backend.chat(
        [{"role": "user", "content": "Name a colour."}], max_tokens=12, temperature=0.0
    )
    assert out.text.strip()
    assert out.usage.completion_tokens > 0 and out.usage.prompt_tokens > 0
    assert out.finish_reason in {"stop", "length"}


def test_completion_with_logprobs_and_stop(llama_server):
    backend = OpenAIBackend(llama_server, "smollm2")
    out = backend.complete(
        "def add(a, b):\n    return", max_tokens=16, temperature=0.0, logprobs=3, stop=["\n"]
    )
    assert "\n" not in out.text
    assert out.logprobs and all(lp.logprob <= 0 for lp in out.logprobs)
    assert all(len(lp.top) >= 1 for lp in out.logprobs)


def test_json_schema_through_the_server(llama_server):
    import json

    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string"}},
        "required": ["colour"],
    }
    backend = OpenAIBackend(llama_server, "smollm2", json_mode="json_object")
    out = backend.chat(
        [{"role": "user", "content": "Name a colour as JSON."}],
        max_tokens=30,
        temperature=0.0,
        json_schema=schema,
    )
    assert isinstance(json.loads(out.text)["colour"], str)


def test_json_schema_request_shapes():
    schema = {"type": "object"}
    with FaultServer() as server:
        fast_backend(server.url).chat([{"role": "user", "content": "x"}], json_schema=schema)
        fast_backend(server.url, json_mode="json_object").complete("x", json_schema=schema)
        first, second = (request["body"]["response_format"] for _, request in server.requests)
    assert first == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert second == {"type": "json_object", "schema": schema}


def test_seeded_sampling_is_reproducible(llama_server):
    backend = OpenAIBackend(llama_server, "smollm2")
    prompt = [{"role": "user", "content": "Write one sentence about rivers."}]
    first = backend.chat(prompt, max_tokens=20, temperature=1.0, seed=7)
    second = backend.chat(prompt, max_tokens=20, temperature=1.0, seed=7)
    assert first.text == second.text


def test_concurrent_batch_keeps_order(llama_server):
    backend = OpenAIBackend(llama_server, "smollm2", concurrency=4)
    prompts = [f"Count: {i}, {i + 1}," for i in range(6)]
    seen: list[int] = []
    results = backend.generate_many(
        [backend.request(prompt=p, max_tokens=4, temperature=0.0) for p in prompts],
        on_result=lambda i, _: seen.append(i),
    )
    assert len(results) == 6 and sorted(seen) == list(range(6))
    single = backend.complete(prompts[3], max_tokens=4, temperature=0.0)
    assert results[3].text == single.text


def test_cache_serves_repeated_calls(llama_server, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    backend = OpenAIBackend(llama_server, "smollm2", cache=cache)
    first = backend.complete("The capital of France is", max_tokens=5, temperature=0.0)
    again = OpenAIBackend(llama_server, "smollm2", cache=ResponseCache(tmp_path / "c.sqlite"))
    second = again.complete("The capital of France is", max_tokens=5, temperature=0.0)
    assert second.cached and not first.cached and second.text == first.text
    assert again.cache.hits == 1 and again.calls == 0


# -- against a server that misbehaves -------------------------------------------------------------


def test_429_honours_retry_after():
    with FaultServer() as server:
        server.script = [("status", 429, 1), ("ok", "after wait")]
        backend = fast_backend(server.url, max_backoff_s=2.0)
        out = backend.chat([{"role": "user", "content": "hi"}])
        assert out.text == "after wait"
        (t0, _), (t1, _) = server.requests
        assert t1 - t0 >= 0.95  # waited what Retry-After asked, not the 0.05 s backoff
        assert backend.retries == 1


def test_retry_after_is_capped_by_max_backoff():
    # A server asking for a 30 s pause waits max_backoff_s (0.2 s), not 30 s.
    with FaultServer() as server:
        server.script = [("status", 429, 30), ("status", 503, 30), ("ok", "soon")]
        backend = fast_backend(server.url)
        start = time.monotonic()
        out = backend.chat([{"role": "user", "content": "hi"}])
        assert out.text == "soon" and backend.retries == 2
        assert time.monotonic() - start < 5


def test_500_then_success_retries():
    with FaultServer() as server:
        server.script = [("status", 500), ("status", 503), ("ok", "fine")]
        backend = fast_backend(server.url)
        assert backend.chat([{"role": "user", "content": "hi"}]).text == "fine"
        assert len(server.requests) == 3


def test_persistent_500_gives_clear_error():
    with FaultServer() as server:
        server.script = [("status", 500)] * 10
        backend = fast_backend(server.url, max_retries=2)
        with pytest.raises(BackendError) as info:
            backend.chat([{"role": "user", "content": "hi"}])
        message = str(info.value)
        assert server.url in message and "HTTP 500" in message and "3 attempts" in message
        assert len(server.requests) == 3


def test_slow_response_times_out_and_retries():
    with FaultServer() as server:
        server.script = [("slow", 2.0), ("ok", "quick")]
        backend = fast_backend(server.url, timeout_s=0.5)
        start = time.monotonic()
        assert backend.chat([{"role": "user", "content": "hi"}]).text == "quick"
        assert time.monotonic() - start < 2.0


def test_timeouts_exhausted_names_endpoint():
    with FaultServer() as server:
        server.script = [("slow", 1.0)] * 5
        backend = fast_backend(server.url, timeout_s=0.3, max_retries=1)
        with pytest.raises(BackendError, match="timed out after 0.3 s"):
            backend.chat([{"role": "user", "content": "hi"}])


def test_malformed_json_is_retried_then_reported():
    with FaultServer() as server:
        server.script = [("garbage", b"{not json"), ("garbage", b'{"choices": []}'), ("ok", "good")]
        backend = fast_backend(server.url)
        assert backend.chat([{"role": "user", "content": "hi"}]).text == "good"
        server.script = [("garbage", b"<html>oops</html>")] * 5
        with pytest.raises(BackendError, match="malformed response"):
            fast_backend(server.url, max_retries=1).chat([{"role": "user", "content": "hi"}])


def test_client_error_is_not_retried():
    with FaultServer() as server:
        server.script = [("status", 400)]
        with pytest.raises(BackendError, match="HTTP 400"):
            fast_backend(server.url).chat([{"role": "user", "content": "hi"}])
        assert len(server.requests) == 1


def test_connection_refused_is_clear():
    from tests.conftest import free_port

    backend = fast_backend(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    with pytest.raises(BackendError, match="connection failed"):
        backend.complete("hi")


def test_api_key_from_environment(monkeypatch):
    monkeypatch.setenv("SYLLABUS_TEST_KEY", "sk-secret-123")
    with FaultServer() as server:
        fast_backend(server.url, api_key_env="SYLLABUS_TEST_KEY").chat(
            [{"role": "user", "content": "hi"}]
        )
        assert server.requests[0][1]["auth"] == "Bearer sk-secret-123"
    monkeypatch.delenv("SYLLABUS_TEST_KEY")
    with pytest.raises(UserError, match="SYLLABUS_TEST_KEY"):
        fast_backend("http://127.0.0.1:1/v1", api_key_env="SYLLABUS_TEST_KEY")


def test_concurrency_is_bounded():
    with FaultServer() as server:
        server.script = [("slow", 0.3)] * 8
        backend = fast_backend(server.url, concurrency=2)
        start = time.monotonic()
        backend.generate_many([backend.request(prompt=str(i)) for i in range(8)])
        elapsed = time.monotonic() - start
        assert elapsed >= 4 * 0.3 * 0.9  # 8 slow calls, 2 at a time: at least 4 rounds
        assert elapsed < 8 * 0.3  # but not one at a time


def test_batch_reports_failures_without_losing_successes():
    with FaultServer() as server:
        server.script = [("status", 400), ("ok", "b"), ("ok", "c")]
        backend = fast_backend(server.url, concurrency=1)
        results = backend.generate_many(
            [backend.request(prompt=str(i)) for i in range(3)], return_exceptions=True
        )
        assert isinstance(results[0], BackendError)
        assert [r.text for r in results[1:]] == ["b", "c"]

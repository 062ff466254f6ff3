"""`syllabus route` as a user runs it (the real CLI, a real port on 127.0.0.1, real models),
driven by the official `openai` client: chat and completions, streaming and not, the key, bad
and oversized requests, 32 concurrent clients, a failing backend, and its log read back as the
next portfolio's task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from syllabus.portfolio.run import run_portfolio
from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow

KEY = "test-route-key"

ROUTE = """\
name = "route-test"

[[candidates]]
name = "small"
model = "smollm2"
price = {{ usd_per_hour = 0.05, utilisation = 0.5 }}

[[candidates]]
name = "large"
model = "gemma3-270m"
price = {{ usd_per_hour = 0.05, utilisation = 0.5 }}

[[candidates]]
name = "dead"
model = "http://127.0.0.1:{dead_port}/v1"
max_retries = 0
timeout_s = 5
price = {{ usd_per_mtok_in = 1.0, usd_per_mtok_out = 2.0 }}

[[tasks]]
name = "served"
kind = "log"
data = "route.jsonl"
quality_threshold = 0.5
p95_latency_s = 30
daily_volume = 100

[[cascades]]
name = "small-then-large"
first = "small"
then = "large"
check = "logprob"
threshold = -0.4

[route]
serve = "{serve}"
fallbacks = {fallbacks}
api_key_env = "ROUTE_TEST_KEY"
log = "route.jsonl"
max_request_bytes = 20000
max_tokens = 16
"""


class RouteServer:
    """`syllabus route CONFIG` (plus `args`) in a subprocess on a free port of 127.0.0.1, up
    once GET /v1/models answers; `key` is what clients send (None: no key)."""

    def __init__(self, config, log, args=(), key: str | None = None, env: dict | None = None):
        self.config, self.log, self.key = config, log, key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.stderr = config.parent / f"stderr-{self.port}.txt"
        with self.stderr.open("wb") as sink:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "syllabus.cli",
                    "route",
                    str(config),
                    "--port",
                    str(self.port),
                    *args,
                ],
                cwd=REPO,
                env={**os.environ, **(env or {})},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.time() + 120
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"syllabus route exited: {self.stderr.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/models", headers=headers, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.close()
        pytest.fail("syllabus route did not start within 120 s")

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.url, api_key=key or self.key or "none", max_retries=0, timeout=120
        )

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Route(RouteServer):
    def __init__(self, root, serve: str, fallbacks: list[str]):
        root.mkdir(parents=True, exist_ok=True)
        config = root / "portfolio.toml"
        config.write_text(
            ROUTE.format(dead_port=free_port(), serve=serve, fallbacks=json.dumps(fallbacks))
        )
        super().__init__(config, root / "route.jsonl", key=KEY, env={"ROUTE_TEST_KEY": KEY})

    def client(self, key: str | None = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key or "none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def route(tmp_path_factory):
    server = Route(tmp_path_factory.mktemp("route"), "small-then-large", ["large"])
    yield server
    server.close()


PROMPT = "Q: What is the capital of Italy?\nA: Rome\nQ: What is the capital of France?\nA:"


def test_chat_and_completions_with_and_without_stream(route):
    client = route.client()
    chat = client.chat.completions.create(
        model="small-then-large",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=6,
        temperature=0,
    )
    assert isinstance(chat.choices[0].message.content, str)
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage.completion_tokens > 0 and chat.usage.prompt_tokens > 0
    text = client.completions.create(
        model="small-then-large", prompt=PROMPT, max_tokens=6, stop=["\n"]
    )
    assert text.choices[0].text.strip() and text.object == "text_completion"

    chunks = list(
        client.chat.completions.create(
            model="small-then-large",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == chat.choices[0].message.content  # greedy: the same answer
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert len(finishes) == 1
    assert (
        chunks[-1].choices == []
        and chunks[-1].usage.completion_tokens == chat.usage.completion_tokens
    )
    assert all(c.usage is None for c in chunks[:-1])

    # A single candidate streams token by token; its chunks add up to the same answer.
    pieces = list(
        client.completions.create(
            model="small", prompt=PROMPT, max_tokens=6, stop=["\n"], stream=True
        )
    )
    assert len([p for p in pieces if p.choices[0].text]) >= 1
    direct = client.completions.create(model="small", prompt=PROMPT, max_tokens=6, stop=["\n"])
    assert "".join(p.choices[0].text for p in pieces) == direct.choices[0].text
    with httpx.stream(
        "POST",
        route.url + "/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "small", "prompt": PROMPT, "max_tokens": 4, "stream": True},
        timeout=60,
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert [m.id for m in client.models.list()][0] == "small-then-large"
    records = route.records()
    assert {r["route"] for r in records} >= {"small-then-large", "small"}
    for record in records:
        assert record["status"] == "ok" and record["served_by"] in ("small", "large")
        assert record["latency_s"] > 0 and record["cost_usd"] > 0
        assert isinstance(record["escalated"], bool) and record["attempts"]


def test_the_key_is_required(route):
    for key in (None, "wrong"):
        with pytest.raises(openai.AuthenticationError) as info:
            route.client(key).chat.completions.create(
                model="small-then-large", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        assert info.value.status_code == 401
    response = httpx.get(route.url + "/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_oversized_and_bad_requests_get_openai_errors(route):
    client = route.client()
    with pytest.raises(openai.APIStatusError) as info:
        client.completions.create(model="small-then-large", prompt="x" * 30_000, max_tokens=4)
    assert info.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as info:  # under the byte limit, over the context
        client.completions.create(model="small-then-large", prompt="hello " * 3000, max_tokens=4)
    assert "context" in str(info.value)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="small-then-large", prompt="hi", max_tokens=1000)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4o", prompt="hi", max_tokens=2)
    bad = httpx.post(
        route.url + "/chat/completions",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"


def test_32_concurrent_clients_for_a_bounded_time(route):
    before = len(route.records())
    client = route.client()
    deadline = time.time() + 12
    done, failures = [], []
    lock = threading.Lock()

    def work(index: int) -> None:
        calls = 0
        while time.time() < deadline and calls < 4:  # bounded in time and in count
            calls += 1
            try:
                if index % 3 == 0:
                    chunks = list(
                        client.chat.completions.create(
                            model="small-then-large",
                            messages=[{"role": "user", "content": f"Say {index}."}],
                            max_tokens=3,
                            stream=True,
                        )
                    )
                    ok = chunks and chunks[-1].choices and chunks[-1].choices[0].finish_reason
                elif index % 3 == 1:
                    reply = client.completions.create(
                        model="small-then-large", prompt=PROMPT, max_tokens=3
                    )
                    ok = isinstance(reply.choices[0].text, str)
                else:
                    reply = client.chat.completions.create(
                        model="small", messages=[{"role": "user", "content": "Hello"}], max_tokens=3
                    )
                    ok = isinstance(reply.choices[0].message.content, str)
                with lock:
                    (done if ok else failures).append(index)
            except Exception as exc:  # every failure is counted and shown
                with lock:
                    failures.append(f"{index}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []
    assert len(done) >= 32
    records = route.records()[before:]
    assert len(records) == len(done)  # every call logged, once
    assert all(r["status"] == "ok" for r in records)


def test_a_failing_backend_falls_through_and_is_logged(tmp_path):
    server = Route(tmp_path / "dead", "dead", ["small"])
    try:
        reply = server.client().completions.create(model="dead", prompt=PROMPT, max_tokens=4)
        assert reply.choices[0].text is not None
        (record,) = server.records()
        assert record["served_by"] == "small" and record["status"] == "ok"
        first, second = record["attempts"]
        assert first["candidate"] == "dead" and not first["ok"] and "connection" in first["error"]
        assert second["candidate"] == "small" and second["ok"]
    finally:
        server.close()


def test_the_route_log_is_the_next_portfolio_task(route, tmp_path):
    client = route.client()
    client.completions.create(
        model="small", prompt=PROMPT, max_tokens=4, stop=["\n"], temperature=0
    )
    client.chat.completions.create(
        model="small-then-large", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    served = [r for r in route.records() if r["served_by"] == "small" and not r["escalated"]]
    out = tmp_path / "out"
    result = run_portfolio(route.config, out, show_progress=False)
    task = result.tasks[0]
    answered = [r for r in route.records() if r["status"] == "ok"]  # not the refused ones
    assert task.kind == "log" and task.items == len(answered)
    rows = {
        r["key"]: r
        for r in map(
            json.loads, (out / "samples" / "served" / "small.jsonl").read_text().splitlines()
        )
    }
    by_line = {f"route.jsonl:{n}": r for n, r in enumerate(route.records(), start=1)}
    greedy = [k for k, r in by_line.items() if r in served and (r.get("temperature") or 0) == 0]
    assert greedy
    # Small reproduces, greedily, the answers it served itself: production traffic as a test set.
    assert all(rows[k]["passed"] for k in greedy), [
        (by_line[k]["completion"], rows[k]["text"]) for k in greedy
    ]

"""What is measured is what is served: a tiny `syllabus portfolio` with an agreement cascade of
SmolLM2-135M ("small") then Gemma 3 270M ("large") on the shipped capitals task, then `syllabus
route --from` its output on 127.0.0.1, sent every item the way the portfolio asked it (the
official `openai` client). Each call must be decided as the portfolio recorded it (escalated or
not, the same score, the same model answering, the same text), because both score it with the
same functions (portfolio/cascades.py) on the same request (Candidate.request).

And no silent empty answers: a chat request the completion-style model answers with nothing
is refused with the reason (422) and logged "empty", never "ok"; in the cascade it escalates."""

from __future__ import annotations

import json
import math

import openai
import pytest

from syllabus.portfolio.config import load_portfolio
from syllabus.portfolio.run import run_portfolio
from syllabus.portfolio.tasks import load_items, stop_for
from tests.conftest import REPO
from tests.portfolio.test_route import RouteServer

pytestmark = pytest.mark.slow

PORTFOLIO = """\
name = "replay"
calibration_share = 0.7

[[candidates]]
name = "small"
model = "smollm2"
price = {{ usd_per_hour = 0.05 }}

[[candidates]]
name = "large"
model = "gemma3-270m"
price = {{ usd_per_hour = 0.05 }}

[[tasks]]
name = "capitals"
data = "{repo}/recipes/portfolio/capitals.jsonl"
limit = 10
quality_threshold = {bar}
p95_latency_s = 30.0
daily_volume = 1000
max_tokens = 6

[[cascades]]
name = "small-then-large"
first = "small"
then = "large"
check = "agreement"
samples = 3
temperature = 1.0

[route]
serve = "small-then-large"
task = "capitals"
log = "route.jsonl"
max_tokens = 32
default_max_tokens = 16
"""
# With these settings (seeded split, samples at temperature 1) the calibration items reach this
# bar only by escalating the answers whose samples disagree, so the calibrated threshold
# escalates some items and not others (checked below): a replay of all or none proves little.
BAR = 0.5

# A chat question SmolLM2-Instruct answers with nothing when it is sent as a plain prompt (the
# transcript of one user message is its text), checked below against the portfolio's own rows.
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    path = root / "portfolio.toml"
    path.write_text(PORTFOLIO.format(repo=REPO, bar=BAR))
    out = root / "out"
    run_portfolio(path, out, show_progress=False)
    server = RouteServer(path, root / "route.jsonl", args=["--from", str(out)])
    yield path, out, json.loads((out / "recommendation.json").read_text()), server
    server.close()


def rows(out, candidate: str) -> dict[str, dict]:
    path = out / "samples" / "capitals" / f"{candidate}.jsonl"
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


def test_route_decides_every_item_as_the_portfolio_recorded(replay):
    path, out, recommendation, server = replay
    (task,) = recommendation["tasks"]
    (cascade,) = task["cascades"]
    decisions = cascade["decisions"]
    assert {d["key"] for d in decisions} == set(cascade["calibration_items"]) | set(
        cascade["report_items"]
    )
    escalated = [d["escalated"] for d in decisions]
    assert any(escalated) and not all(escalated), (cascade["threshold"], decisions)
    config, base = load_portfolio(path)
    task_config = config.task("capitals")
    items = {item.key: item for item in load_items(task_config, base)}
    measured = {"small": rows(out, "small"), "large": rows(out, "large")}
    client = server.client()
    before = len(server.records()) if server.log.exists() else 0
    for decision in decisions:
        item = items[decision["key"]]
        reply = client.completions.create(
            model="small-then-large",
            prompt=item.prompt,
            max_tokens=task_config.max_tokens,
            stop=stop_for(task_config, item, "completion"),
            temperature=config.temperature,
        )
        record = server.records()[-1]
        first = record["attempts"][0]
        assert first["candidate"] == "small"
        assert float(first["score"]) == float(decision["score"]), (decision, record)
        assert record["escalated"] == decision["escalated"], (decision, record)
        assert record["served_by"] == decision["answered_by"], (decision, record)
        # The answer served is the one measured for the model that answered.
        assert reply.choices[0].text == measured[decision["answered_by"]][item.key]["text"]
        samples = [a for a in record["attempts"] if a["check"] == "agreement sample"]
        assert len(samples) == (0 if math.isinf(float(decision["score"])) else 3)
    assert len(server.records()) - before == len(decisions)
    # The threshold the route applied is the calibrated one.
    assert (
        f"vs threshold {float(cascade['threshold']):.4g}"
        in server.records()[-1]["attempts"][0]["check"]
    )


def test_a_chat_request_is_rendered_as_the_candidate_was_measured(replay):
    path, out, _, server = replay
    config, base = load_portfolio(path)
    item = load_items(config.task("capitals"), base)[0]
    client = server.client()
    # One user message reaches a completion-style candidate as its text: the measured prompt.
    chat = client.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": item.prompt}],
        max_tokens=6,
        stop=["\n"],
        temperature=0,
    )
    assert chat.choices[0].message.content == rows(out, "small")[item.key]["text"]
    record = server.records()[-1]
    assert record["status"] == "ok" and record["messages"][0]["content"] == item.prompt


def test_an_empty_answer_is_refused_with_the_reason_and_logged_empty(replay):
    _, _, _, server = replay
    client = server.client()
    before = len(server.records())
    # Served by the completion-style model alone (no fallbacks): it answers with no text.
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(
            model="small", messages=[{"role": "user", "content": QUESTION}], temperature=0
        )
    assert info.value.status_code == 422
    error = info.value.body
    assert error["code"] == "empty_answer"
    assert "small answered with no text" in error["message"]
    assert "prompt_style" in error["message"] and "/v1/completions" in error["message"]
    (record,) = server.records()[before:]
    assert record["status"] == "empty" and record["completion"].strip() == ""
    assert record["served_by"] == "small" and record["attempts"][0]["empty"]
    # Streamed, it ends with the same error instead of a finish: never a silent empty stream.
    with pytest.raises(openai.APIError) as streamed:
        for _ in client.chat.completions.create(
            model="small",
            messages=[{"role": "user", "content": QUESTION}],
            temperature=0,
            stream=True,
        ):
            pass
    assert "answered with no text" in str(streamed.value)
    assert server.records()[-1]["status"] == "empty"


def test_an_empty_first_answer_escalates_in_the_cascade(replay):
    _, _, _, server = replay
    reply = server.client().chat.completions.create(
        model="small-then-large",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        temperature=0,
    )
    record = server.records()[-1]
    first, then = record["attempts"]  # an empty answer draws no agreement samples
    assert first["candidate"] == "small" and first["empty"] and first["score"] == "-inf"
    assert "(empty answer)" in first["check"] and first["check"].endswith(": escalate")
    assert record["escalated"] and then["candidate"] == "large"
    assert record["status"] == "ok" and record["served_by"] == "large"
    assert reply.choices[0].message.content.strip()

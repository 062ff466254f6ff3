"""`syllabus finetune` reading a `syllabus route` log with `data.log_split` trains only on the
log's training part: the held-out calls (what the next round is measured on) are skipped and
counted, and a portfolio build on a log passes the same split to the trainer."""

from __future__ import annotations

import json

from syllabus.finetune.config import FinetuneConfig, LogSplit
from syllabus.finetune.data import collect, log_parts, request_key
from syllabus.portfolio import dates
from syllabus.portfolio.build import finetune_config, training_records
from syllabus.portfolio.config import load_portfolio
from syllabus.portfolio.tasks import read_route_log

SPLIT = LogSplit(heldout=0.4, seed=7)


def write_route_log(path, items) -> list[dict]:
    """Route log lines of chat calls, one failed; returns them as read back."""
    lines = []
    for n, item in enumerate(items):
        failed = n == 3
        lines.append(
            {
                "status": "error" if failed else "ok",
                "messages": [{"role": "user", "content": item.prompt}],
                "completion": None if failed else item.reference,
                "stop": ["\n"],
            }
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return read_route_log(path)


def test_finetune_trains_only_on_the_training_part_of_a_route_log(tmp_path):
    items = dates.draw(11, {"train": 0, "calibration": 0, "test": 80})["test"]
    calls = write_route_log(tmp_path / "route.jsonl", items)
    parts = log_parts(calls, SPLIT)
    config = FinetuneConfig(
        base="smollm2",
        data={"datasets": [str(tmp_path / "route.jsonl")], "log_split": SPLIT.model_dump()},
        eval={"enabled": False},
        train={"max_steps": 1},
    )
    data = config.data
    collected = collect(data.datasets, data.kinds, 0.0, 0, None, data.log_split)
    trained = [request_key({"messages": c.messages}) for c in collected.conversations]
    expected = [request_key(c) for c in parts.train if c["status"] == "ok"]
    assert trained == expected and trained
    assert not set(trained) & {request_key(c) for c in parts.heldout}
    # Each conversation is the request and the answer served.
    by_prompt = {i.prompt: i.reference for i in items}
    for conversation in collected.conversations:
        user, answer = conversation.messages
        assert answer == {"role": "assistant", "content": by_prompt[user["content"]]}
    held = collected.stats.dropped["log: held out for measurement (data.log_split)"]
    assert held == len(parts.heldout) > 0
    failed_in_train = sum(c["status"] == "error" for c in parts.train)
    assert collected.stats.dropped.get("log: failed call", 0) == failed_in_train
    # Without the split every answered call is trained on.
    everything = collect(data.datasets, data.kinds, 0.0, 0, None)
    assert len(everything.conversations) == sum(c["status"] == "ok" for c in calls)


ROUND = """\
name = "round"

[[candidates]]
name = "next"
price = {{ usd_per_hour = 0.05 }}

[candidates.build]
base = "smollm2"
data = "route.jsonl"
log_split = {{ heldout = {heldout}, seed = {seed} }}
decontam = {{ enabled = false }}

[[tasks]]
name = "traffic"
kind = "log"
data = "route.jsonl"
split = {{ heldout = {heldout}, seed = {seed} }}
quality_threshold = 0.9
p95_latency_s = 1.0
daily_volume = 100
"""


def test_a_portfolio_build_on_a_log_gets_the_same_split(tmp_path):
    items = dates.draw(12, {"train": 0, "calibration": 0, "test": 40})["test"]
    calls = write_route_log(tmp_path / "route.jsonl", items)
    path = tmp_path / "round.toml"
    path.write_text(ROUND.format(heldout=SPLIT.heldout, seed=SPLIT.seed))
    config, base = load_portfolio(path)
    candidate = config.candidate("next")
    records = training_records(candidate, base)
    parts = log_parts(calls, SPLIT)
    assert [request_key({"messages": r.messages}) for r in records] == [
        request_key(c) for c in parts.train if c["status"] == "ok"
    ]
    trainer = finetune_config(candidate, len(records), len(records), config, base)
    assert trainer.data.log_split == SPLIT

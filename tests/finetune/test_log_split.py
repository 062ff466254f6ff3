"""`syllabus finetune` reading a `syllabus route` log with `data.log_split` trains only on the
log's training part: the held-out calls (what the next round is measured on) are skipped and
counted, and a portfolio build on a log passes the same split to the trainer."""

from __future__ import annotations

import json

from syllabus.finetune.config import FinetuneConfig, LogSplit
from syllabus.finetune.data import collect, log_parts, read_labels, request_key
from syllabus.portfolio import dates
from syllabus.portfolio.build import build_key, finetune_config, training_records
from syllabus.portfolio.config import load_portfolio
from syllabus.portfolio.flywheel import append_labels
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


def test_labels_replace_the_answers_served_and_a_build_changes_with_them(tmp_path):
    """With `labels`, a call of the training part is trained on the team's right answer (a
    failed call too), a call without one on what was served; a changed label changes the
    records a build trains on, so its key (and the build) changes."""
    items = dates.draw(13, {"train": 0, "calibration": 0, "test": 40})["test"]
    calls = write_route_log(tmp_path / "route.jsonl", items)
    # Serve two wrong answers, so a label differs from what was served.
    wrong = [n for n, c in enumerate(calls) if c["status"] == "ok"][:2]
    lines = (tmp_path / "route.jsonl").read_text().splitlines()
    for n in wrong:
        line = json.loads(lines[n])
        lines[n] = json.dumps({**line, "completion": "1999-12-31"})
    (tmp_path / "route.jsonl").write_text("\n".join(lines) + "\n")
    calls = read_route_log(tmp_path / "route.jsonl")
    # The team labels every call but the last.
    labelled = items[:-1]
    labels_file = tmp_path / "labels.jsonl"
    append_labels(labels_file, labelled)
    config = FinetuneConfig(
        base="smollm2",
        data={"datasets": [str(tmp_path / "route.jsonl")], "labels": str(labels_file)},
        eval={"enabled": False},
        train={"max_steps": 1},
    )
    labels = read_labels(labels_file)
    data = config.data
    collected = collect(data.datasets, data.kinds, 0.0, 0, None, None, labels)
    answers = {c.messages[0]["content"]: c.messages[-1]["content"] for c in collected.conversations}
    right = {i.prompt: i.reference for i in items}
    for item in labelled:  # every labelled call, the failed one included, trains on its label
        assert answers[item.prompt] == item.reference
    last = calls[-1]
    assert last["status"] == "ok" and answers[items[-1].prompt] == last["completion"]
    assert collected.labelled == len(labelled)
    assert "log: failed call" not in collected.stats.dropped  # the failed call was labelled
    assert all(answers[items[n].prompt] == right[items[n].prompt] for n in wrong)
    # Unlabelled, the wrong answers served are what it would train on.
    served = collect(data.datasets, data.kinds, 0.0, 0, None)
    assert {c.messages[-1]["content"] for c in served.conversations} >= {"1999-12-31"}

    # A portfolio build reads the same labels (relative to its TOML) and its key follows them.
    path = tmp_path / "round.toml"
    path.write_text(
        ROUND.format(heldout=SPLIT.heldout, seed=SPLIT.seed).replace(
            "decontam = { enabled = false }",
            'decontam = { enabled = false }\nlabels = "labels.jsonl"',
        )
    )
    round_config, base = load_portfolio(path)
    candidate = round_config.candidate("next")
    records = training_records(candidate, base)
    trainer = finetune_config(candidate, len(records), len(records), round_config, base)
    assert trainer.data.labels == str(labels_file)
    parts = log_parts(calls, SPLIT)
    expected = []
    for call in parts.train:  # log order: the label, else the answer served, else skipped
        label = labels.get(request_key(call))
        if label is not None or call["status"] == "ok":
            expected.append(label if label is not None else call["completion"])
    assert [r.messages[-1]["content"] for r in records] == expected
    key = build_key(candidate, len(records), records, trainer)
    # Relabel a call the build trains on: its records, and so its key, change.
    trained = next(c for c in parts.train if request_key(c) in labels)
    rows = [json.loads(line) for line in labels_file.read_text().splitlines()]
    for row in rows:
        if request_key(row) == request_key(trained):
            row["reference"] = "2000-01-01"
    labels_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    again = training_records(candidate, base)
    assert "2000-01-01" in [r.messages[-1]["content"] for r in again]
    assert build_key(candidate, len(again), again, trainer) != key

"""The flywheel's split of a route log, without models: a round trains on one part and is
measured on the other, disjoint by request, deterministic, stable as traffic is appended, and
refused when a build and a task would read the same log through different splits. The log task
scores against the team's labels when it has them (every call measured must have one), else
against what was served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syllabus.errors import UserError
from syllabus.finetune.config import LogSplit
from syllabus.finetune.data import is_heldout, log_parts, request_key
from syllabus.portfolio import dates
from syllabus.portfolio.config import TaskConfig, load_portfolio
from syllabus.portfolio.flywheel import append_labels, seen_references, unseen_requests
from syllabus.portfolio.tasks import load_items

SPLIT = LogSplit(heldout=0.3, seed=0)


def route_call(prompt: str, completion: str | None, status: str = "ok") -> dict:
    """A line as `syllabus route` writes it for a chat call (the fields the readers use)."""
    return {
        "status": status,
        "served_by": "served",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 12,
        "stop": ["\n"],
        "completion": completion,
    }


def traffic(seed: int, calls: int) -> list[dates.DateItem]:
    return dates.draw(seed, {"train": 0, "calibration": 0, "test": calls})["test"]


def write_log(path: Path, calls: list[dict]) -> None:
    path.write_text("".join(json.dumps(c) + "\n" for c in calls))


def test_split_is_disjoint_deterministic_and_moves_nothing_when_traffic_is_appended():
    items = traffic(seed=3, calls=400)
    calls = [route_call(i.prompt, i.reference) for i in items]
    # The same requests again (other answers, one failed): a repeat is always in its first's part.
    repeats = [route_call(i.prompt, "wrong", "ok") for i in items[:50]]
    repeats.append(route_call(items[0].prompt, None, "error"))
    parts = log_parts(calls + repeats, SPLIT)
    assert len(parts.train) + len(parts.heldout) == len(calls) + len(repeats)
    assert parts.shared_requests() == set()
    heldout_keys = {request_key(c) for c in parts.heldout}
    for repeat in repeats:
        assert (request_key(repeat) in heldout_keys) == is_heldout(repeat, SPLIT)
    # About 30% of 400 requests (the hash is uniform): a binomial's 99.9% range.
    share = len({request_key(c) for c in parts.heldout}) / 400
    assert 0.23 < share < 0.38, share
    # Deterministic: the same calls, the same parts, the same fingerprints.
    again = log_parts(calls + repeats, SPLIT)
    assert again.fingerprint("heldout") == parts.fingerprint("heldout")
    assert again.fingerprint("train") == parts.fingerprint("train")
    assert parts.fingerprint("train") != parts.fingerprint("heldout")
    # Appending traffic moves no earlier call; another seed is another split.
    more = [route_call(i.prompt, i.reference) for i in traffic(seed=4, calls=100)]
    grown = log_parts(calls + more, SPLIT)
    earlier = {id(c) for c in calls}
    assert [id(c) for c in grown.heldout if id(c) in earlier] == [
        id(c) for c in parts.heldout if id(c) in earlier
    ]
    other = log_parts(calls, LogSplit(heldout=0.3, seed=1))
    assert {request_key(c) for c in other.heldout} != {
        request_key(c) for c in parts.heldout if id(c) in earlier
    }


def test_the_request_key_ignores_the_answer_and_tells_prompts_from_messages():
    asked = [{"role": "user", "content": "When?"}]
    answered = [*asked, {"role": "assistant", "content": "Now."}]
    assert request_key({"messages": asked}) == request_key({"messages": answered})
    assert request_key({"messages": asked, "completion": "x"}) == request_key({"messages": asked})
    assert request_key({"prompt": "When?"}) != request_key({"messages": asked})


TASK = {
    "name": "traffic",
    "kind": "log",
    "data": "route.jsonl",
    "quality_threshold": 0.9,
    "p95_latency_s": 1.0,
    "daily_volume": 100,
}


def test_log_task_measures_the_heldout_part_against_labels(tmp_path):
    items = traffic(seed=5, calls=60)
    # The model served got every third date wrong; one call failed; one was refused empty.
    calls = [
        route_call(item.prompt, item.reference if n % 3 else "1999-01-01")
        for n, item in enumerate(items)
    ]
    calls[1] = route_call(items[1].prompt, None, "error")
    calls[2] = route_call(items[2].prompt, "", "empty")
    write_log(tmp_path / "route.jsonl", calls)
    labels = tmp_path / "labels.jsonl"
    append_labels(labels, items)
    heldout_lines = [n + 1 for n, c in enumerate(calls) if is_heldout(c, SPLIT)]
    assert 5 < len(heldout_lines) < 35

    labelled = load_items(
        TaskConfig(**TASK, split=SPLIT.model_dump(), references="labels.jsonl"), tmp_path
    )
    # Every held-out call is measured (a failed or empty one is still a question the team
    # wants answered), in log order, against the program's reference, never what was served.
    assert [item.key for item in labelled] == [f"route.jsonl:{n}" for n in heldout_lines]
    for item in labelled:
        n = int(item.key.split(":")[1]) - 1
        assert item.spec["reference"] == items[n].reference
        assert item.spec["reference_from"] == "labels"
        assert item.messages == calls[n]["messages"] and item.spec["stop"] == ["\n"]

    served = load_items(TaskConfig(**TASK, split=SPLIT.model_dump()), tmp_path)
    ok_heldout = [n for n in heldout_lines if calls[n - 1]["status"] == "ok"]
    assert [item.key for item in served] == [f"route.jsonl:{n}" for n in ok_heldout]
    for item in served:
        assert item.spec["reference"] == calls[int(item.key.split(":")[1]) - 1]["completion"]
        assert item.spec["reference_from"] == "served"

    # A call measured without a label is refused, naming the line.
    first = heldout_lines[0]
    labels.write_text(
        "".join(line + "\n" for line in labels.read_text().splitlines() if items[first - 1].prompt
                not in json.loads(line)["messages"][0]["content"])
    )  # fmt: skip
    with pytest.raises(UserError, match=rf"route.jsonl:{first}: no reference for this call"):
        load_items(
            TaskConfig(**TASK, split=SPLIT.model_dump(), references="labels.jsonl"), tmp_path
        )


BUILD_AND_TASK = """\
name = "round"

[[candidates]]
name = "served"
model = "smollm2"
price = {{ usd_per_hour = 0.05 }}

[[candidates]]
name = "next"
price = {{ usd_per_hour = 0.05 }}

[candidates.build]
base = "smollm2"
data = "route.jsonl"
{build_split}

[[tasks]]
name = "traffic"
kind = "log"
data = "route.jsonl"
{task_split}
quality_threshold = 0.9
p95_latency_s = 1.0
daily_volume = 100
"""


@pytest.mark.parametrize(
    ("build_split", "task_split"),
    [
        ("", "split = { heldout = 0.3 }"),
        ("log_split = { heldout = 0.3 }", ""),
        ("log_split = { heldout = 0.3, seed = 1 }", "split = { heldout = 0.3 }"),
        ("log_split = { heldout = 0.2 }", "split = { heldout = 0.3 }"),
    ],
)
def test_a_build_and_a_task_on_one_log_must_share_the_split(tmp_path, build_split, task_split):
    path = tmp_path / "round.toml"
    path.write_text(BUILD_AND_TASK.format(build_split=build_split, task_split=task_split))
    with pytest.raises(UserError, match="give both the same split"):
        load_portfolio(path)


def test_the_round_loads_before_its_log_exists(tmp_path):
    """The same file is served first, and serving writes the log the build trains on."""
    path = tmp_path / "round.toml"
    path.write_text(
        BUILD_AND_TASK.format(
            build_split="log_split = { heldout = 0.3 }", task_split="split = { heldout = 0.3 }"
        )
    )
    config, _ = load_portfolio(path)
    assert config.task("traffic").split == config.candidate("next").build.log_split
    with pytest.raises(ValueError, match="options of a log task"):
        TaskConfig(**{**TASK, "kind": "custom"}, split={"heldout": 0.3})


def test_the_traffic_is_unseen_by_the_specialize_splits(tmp_path):
    dates.generate(tmp_path, seed=2, sizes={"train": 300, "calibration": 50, "test": 100})
    seen = seen_references([tmp_path])
    assert len(seen) == 450
    items = unseen_requests(seed=2, calls=200, seen=seen)  # the same seed: all seen, skipped
    assert len(items) == 200 and not {i.reference for i in items} & seen
    assert unseen_requests(seed=2, calls=200, seen=seen) == items  # seeded
    with pytest.raises(UserError, match="no dates splits"):
        seen_references([tmp_path / "nothing"])

"""The flywheel end to end on a tiny scale: `syllabus route` serves SmolLM2-135M, 16 unseen
dates requests arrive through the official `openai` client and are logged, a candidate is
fine-tuned (a few LoRA steps) on the log's training part, and the round measures the model
served and the new one on the held-out part against the program's references.

The built candidate's base is the tiny random Llama of tests/finetune (SmolLM2's tokenizer), so
the build takes seconds; what is checked is the plumbing: which calls are trained on, which are
measured, and against what."""

from __future__ import annotations

import json

import pytest

from syllabus.finetune.data import log_parts, request_key
from syllabus.portfolio import dates
from syllabus.portfolio.config import load_portfolio
from syllabus.portfolio.flywheel import run_flywheel
from syllabus.portfolio.tasks import load_items, read_route_log
from tests.finetune.conftest import smollm2_gguf, tiny_base  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROUND = """\
name = "tiny-flywheel"

[[candidates]]
name = "served"
model = "smollm2"
prompt_style = "chat"
price = {{ usd_per_hour = 0.05, utilisation = 0.5 }}

[[candidates]]
name = "next"
prompt_style = "chat"
price = {{ usd_per_hour = 0.05, utilisation = 0.5 }}

[candidates.build]
base = "{base}"
data = "log/route.jsonl"
log_split = {{ heldout = 0.5, seed = 0 }}
seq_len = 128
val_fraction = 0.2
quant = "f32"
decontam = {{ enabled = false }}
lora = {{ rank = 4, alpha = 8.0, dropout = 0.0 }}
train = {{ batch_size = 2, lr = 5e-3, warmup_steps = 1, max_steps = 3, eval_every = 2, eval_batches = 1, checkpoint_every = 4 }}

[[tasks]]
name = "traffic"
kind = "log"
data = "log/route.jsonl"
split = {{ heldout = 0.5, seed = 0 }}
references = "log/labels.jsonl"
quality_threshold = 0.5
p95_latency_s = 30.0
daily_volume = 1000
max_tokens = 12

[route]
serve = "served"
log = "log/route.jsonl"
"""

CALLS = 16


@pytest.fixture(scope="module")
def flywheel(tmp_path_factory, tiny_base):  # noqa: F811 (the fixture imported above)
    root = tmp_path_factory.mktemp("flywheel")
    dates.generate(root / "splits", seed=1, sizes={"train": 40, "calibration": 5, "test": 10})
    path = root / "round.toml"
    path.write_text(ROUND.format(base=tiny_base))
    result = run_flywheel(
        path, root / "out", calls=CALLS, seed=9, unseen_by=[root / "splits"], show_progress=False
    )
    return root, path, result


def test_route_logged_every_unseen_request(flywheel):
    root, _, result = flywheel
    calls = read_route_log(root / "log" / "route.jsonl")
    assert result.traffic.calls == len(calls) == CALLS
    assert sum(result.traffic.statuses.values()) == CALLS and result.traffic.ok >= 1
    assert all(c["served_by"] == "served" for c in calls if c["status"] == "ok")
    labels = [json.loads(line) for line in (root / "log" / "labels.jsonl").read_text().splitlines()]
    assert [request_key(c) for c in calls] == [request_key(row) for row in labels]
    seen = set(dates.read_split(root / "splits" / "train.jsonl").references)
    assert not {row["reference"] for row in labels} & seen
    written = json.loads((root / "out" / "flywheel.json").read_text())
    assert written["traffic"]["calls"] == CALLS and written["previous"] == "served"


def test_the_build_trained_only_on_the_training_part(flywheel):
    root, _, result = flywheel
    calls = read_route_log(root / "log" / "route.jsonl")
    parts = log_parts(calls, load_portfolio(root / "round.toml")[0].task("traffic").split)
    assert result.split["shared_requests"] == 0
    assert result.split["train_calls"] + result.split["heldout_calls"] == CALLS
    assert result.split["heldout_fingerprint"] == parts.fingerprint("heldout")
    (model,) = result.built and json.loads((root / "out" / "round" / "recommendation.json").read_text())["builds"]["next"]  # fmt: skip
    answered_train = sum(c["status"] == "ok" for c in parts.train)
    assert model["figures"]["conversations"] == answered_train
    # What labels would change: the training calls the tiny random model answered wrong.
    rows = [json.loads(line) for line in (root / "log" / "labels.jsonl").read_text().splitlines()]
    label = {request_key(row): row["reference"] for row in rows}
    wrong = [c for c in parts.train if (c.get("completion") or "").strip() != label[request_key(c)]]
    assert result.split["train_calls_served_unlike_label"] == len(wrong) > 0


def test_the_round_measured_both_on_the_heldout_part_against_the_labels(flywheel):
    root, path, result = flywheel
    config, base = load_portfolio(path)
    items = load_items(config.task("traffic"), base)
    assert len(items) == result.split["heldout_calls"]
    assert all(item.spec["reference_from"] == "labels" for item in items)
    names = {o["name"]: o for o in result.options}
    assert set(names) == {"served", "next"}
    for name in names:
        rows = [
            json.loads(line)
            for line in (root / "out" / "round" / "samples" / "traffic" / f"{name}.jsonl").open()
        ]
        assert sorted(r["key"] for r in rows) == sorted(i.key for i in items)
        assert names[name]["passed"] == sum(r["passed"] for r in rows)
    (paired,) = result.against_previous
    assert paired["built"] == "next" and paired["against"] == "served"
    assert paired["items"] == len(items)

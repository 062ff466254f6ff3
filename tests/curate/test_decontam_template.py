"""Decontamination tells a benchmark's template from its content: the instruction and worked
examples every item starts with are ignored, a copy of an item's own words is still caught, and
a benchmark without a template (HumanEval) loses nothing to the rule."""

from __future__ import annotations

import json
import random

import numpy as np

from syllabus.curate.config import DecontamConfig
from syllabus.curate.decontam import BenchmarkItem, NgramIndex, build_index, jsonl_items
from syllabus.curate.pipeline import single_step
from syllabus.store import open_dataset
from syllabus.types import Record

INSTRUCTION = (
    "Extract the sender, the product and the quantity from the message, as JSON with the keys "
    "sender, product and quantity."
)
SHOTS = (
    "Message: Hello, this is Dana from Northwind; please send 12 crates of green tea to the "
    'usual dock.\nFields: {"sender": "Dana", "product": "green tea", "quantity": 12}\n\n'
    "Message: Olaf here. We need 3 pallets of oat milk before Friday, thanks.\n"
    'Fields: {"sender": "Olaf", "product": "oat milk", "quantity": 3}'
)
WORDS = [
    "amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
    "juniper", "kestrel", "lantern", "meadow", "nectar", "orchid", "pepper", "quartz", "river",
    "saffron", "timber", "umber", "velvet", "willow", "yarrow", "zephyr", "anchor", "bramble",
    "copper", "dune", "falcon",
]  # fmt: skip


def prompt(message: str) -> str:
    """The task's prompt: the instruction and two worked examples, then the message."""
    return f"{INSTRUCTION}\n\n{SHOTS}\n\nMessage: {message}\nFields:"


def task_item(rng: random.Random) -> tuple[str, str]:
    """A message of 16 random words and its answer."""
    words = [rng.choice(WORDS) for _ in range(16)]
    answer = {"sender": words[0], "product": f"{words[3]} {words[4]}", "quantity": len(words[5])}
    return " ".join(words).capitalize() + ".", json.dumps(answer)


def templated_task(tmp_path, items: int = 40, train: int = 60):
    """A benchmark JSONL (every item: the template + its own message; one item too short to
    check) and training records of the same task with other messages."""
    rng = random.Random(0)
    bench = tmp_path / "tasks.jsonl"
    test_items = [task_item(rng) for _ in range(items)]
    lines = [
        {"id": f"t{k}", "prompt": prompt(message), "answer": answer}
        for k, (message, answer) in enumerate(test_items)
    ]
    lines.append({"id": "short", "prompt": prompt("Call me.")})
    bench.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = []
    for k in range(train):
        message, answer = task_item(rng)
        records.append({"id": f"train{k}", "text": f"{prompt(message)} {answer}"})
    return bench, test_items, records


def test_template_ignored_and_a_planted_test_item_still_caught(tmp_path):
    bench, test_items, records = templated_task(tmp_path)
    copied_message, copied_answer = test_items[5]
    records += [
        # the whole test item, template and all, as a training record
        {"id": "copy", "text": f"{prompt(copied_message)} {copied_answer}"},
        # only the item's own words, amid other text: no template in sight
        {"id": "forwarded", "text": f"Forwarded: {test_items[17][0]} -- sent from my phone"},
    ]
    corpus = tmp_path / "train.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = DecontamConfig(humaneval=False, benchmarks=[str(bench)])
    result = single_step("decontam", [corpus], tmp_path / "out", decontam=config)

    kept = {record.id for record in open_dataset(tmp_path / "out")}
    assert kept == {f"train{k}" for k in range(60)}  # the task's own data survives
    decontam = next(step for step in result.steps if step.name == "decontam")
    assert decontam.dropped == {"contaminated: tasks": 2}
    report = json.loads((tmp_path / "out" / "reports" / "decontam-tasks.json").read_text())
    assert report["removed_records"] == 2
    hits = {hit["record_id"]: hit for hit in report["hits"]}
    assert hits["copy"]["item_id"] == "t5" and hits["forwarded"]["item_id"] == "t17"
    # The evidence is the item's own words, not the template it shares with every item.
    copy_text = records[-2]["text"]
    start, end = hits["copy"]["span"]
    assert copy_text[start:end] == hits["copy"]["matched"]
    assert start >= copy_text.index(copied_message) and len(hits["copy"]["matched"].split()) >= 13

    template = report["template"]
    assert template["share"] == 0.1 and template["min_items"] == 3
    assert template["ngrams_ignored"] > 50  # instruction and two worked examples: ~90 words
    assert template["items_holding"] == 41
    assert template["items_content_too_short"] == 1  # "Call me." cannot be checked at 13
    assert report["items"] == 40
    shown = " ".join(passage["text"] for passage in template["passages"])
    assert INSTRUCTION in shown and "Olaf here. We need 3 pallets of oat milk" in shown
    assert template["passages"][0]["items"] == 41


def test_without_the_rule_the_template_removes_the_whole_task(tmp_path):
    """What the rule is for: with template_share = 1 (off) every record of the same task is
    'contaminated' by the worked examples it shares with the benchmark."""
    bench, _, records = templated_task(tmp_path, train=10)
    index = NgramIndex(jsonl_items(bench), 13, template_share=1.0)
    assert index.template("tasks").ngrams == 0
    assert all(index.match(Record(text=r["text"], id=r["id"])) for r in records)
    with_rule = NgramIndex(jsonl_items(bench), 13)
    assert not any(with_rule.match(Record(text=r["text"], id=r["id"])) for r in records)


def test_humaneval_has_no_template():
    """No 13-gram of HumanEval is in more than 2 of its 164 items: the rule ignores nothing,
    every item is checked with all its n-grams (as before the rule)."""
    index = build_index(DecontamConfig())
    template = index.template("humaneval")
    assert template.ngrams == 0 and template.items_holding == 0 and not template.passages
    assert len(index.items) == 164
    everything = NgramIndex(index.items, 13, template_share=1.0)
    assert np.array_equal(index.hashes, everything.hashes)


def test_a_near_duplicate_pair_is_not_a_template():
    """Two items of a small benchmark sharing a passage are 2 of 4 (50%) but fewer than
    template_min_items: the passage stays evidence for both."""
    shared = "return the list of words of the sentence sorted by their length and then by"
    items = [
        BenchmarkItem("small", "a", f"{shared} alphabetical order, shortest first"),
        BenchmarkItem("small", "b", f"{shared} the position they had, longest first"),
        BenchmarkItem("small", "c", "count the vowels of a word and return the count as int x"),
        BenchmarkItem("small", "d", "parse a date written day month year and return it as iso"),
    ]
    index = NgramIndex(items, 13)
    assert index.template("small").ngrams == 0
    hits = index.match(Record(text=f"Exercise: {shared} something else"))
    assert {hit.item_id for hit in hits} == {"a", "b"}

"""Fine-tuning data against a templated evaluation file: the task's own chat records survive
decontamination (the template they share with the evaluation items is ignored), and when a step
leaves nothing to train on the error says which step removed how many and why."""

from __future__ import annotations

import json
import random

import pytest

from syllabus.curate.config import DecontamConfig
from syllabus.errors import UserError
from syllabus.finetune.data import collect, decontaminate
from syllabus.store import DatasetWriter
from syllabus.types import Record
from tests.curate.test_decontam_template import prompt, task_item, templated_task


def chat_log(path, pairs) -> None:
    path.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
            + "\n"
            for question, answer in pairs
        )
    )


def finetune_config(log, bench=None, **data):
    from syllabus.finetune.config import FinetuneConfig

    return FinetuneConfig(
        base="smollm2", data={"datasets": [str(log)], **data},
        eval={"tasks": [f"exact={bench}"]} if bench else {"enabled": False},
        train={"max_steps": 1},
    )  # fmt: skip


def test_the_tasks_own_chat_records_survive_a_templated_eval_file(tmp_path):
    bench, _, _ = templated_task(tmp_path)
    rng = random.Random(1)
    log = tmp_path / "train.jsonl"
    chat_log(
        log, [(prompt(message), answer) for message, answer in (task_item(rng) for _ in range(30))]
    )
    collected = collect([str(log)], ["dialogue"], 0.0, 0, None)
    out = tmp_path / "decontam"
    kept, summary = decontaminate(
        collected.conversations, DecontamConfig(humaneval=False), [bench], [], out
    )
    assert len(kept) == 30 and summary["removed"] == 0
    assert summary["sources"] == {"tasks": str(bench)}
    assert summary["template_ngrams_ignored"]["tasks"] > 50
    assert summary["template"] == {"share": 0.1, "min_items": 3}
    assert json.loads((out / "decontam.json").read_text()) == summary
    report = json.loads((out / "decontam-tasks.json").read_text())
    assert report["template"]["ngrams_ignored"] == summary["template_ngrams_ignored"]["tasks"]


def test_nothing_left_after_decontamination_names_the_step_the_count_and_the_file(tmp_path):
    from syllabus.finetune.run import prepare_data

    bench, test_items, _ = templated_task(tmp_path)
    log = tmp_path / "train.jsonl"
    # Every conversation is an evaluation item, answer included: real contamination.
    chat_log(log, [(prompt(message), answer) for message, answer in test_items[:3]])
    out = tmp_path / "data"
    out.mkdir()
    config = finetune_config(log, bench)
    with pytest.raises(UserError) as error:
        prepare_data(config, 0, tmp_path / "no-model-needed", out)
    message = str(error.value)
    assert message.startswith("finetune: no conversations to train on: ")
    assert f"read 3 records and log lines from {log}" in message
    assert (
        f"decontamination against {bench} removed 3 of 3 conversations (13-gram matches with "
        "its items; " in message
    )
    assert f"report: {out / 'decontam' / 'decontam-tasks.json'}" in message
    assert "ignored" in message  # the template was already set aside: these are the items
    assert "finetune.decontam.template_share (0.1)" in message
    report = json.loads((out / "decontam" / "decontam-tasks.json").read_text())
    assert report["removed_records"] == 3


def test_nothing_left_after_collection_names_the_skipped_kinds(tmp_path):
    from syllabus.finetune.run import prepare_data

    data = tmp_path / "notes"
    with DatasetWriter(data) as writer:
        for k in range(2):
            writer.write(Record(text=f"note {k}", kind="text", source=f"n{k}"))
    out = tmp_path / "data"
    out.mkdir()
    with pytest.raises(UserError) as error:
        prepare_data(finetune_config(data), 0, tmp_path, out)
    assert str(error.value) == (
        f"finetune: no conversations to train on: read 2 records and log lines from {data}; "
        "2 of them skipped (2 kind text not in data.kinds). Conversations are made from "
        "records of the kinds in finetune.data.kinds (exercise, dialogue, reasoning) and from "
        "JSONL chat logs with 'messages'"
    )

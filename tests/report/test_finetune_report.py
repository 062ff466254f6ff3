"""`syllabus finetune`'s report from a finished run's files (no model needed): base and
fine-tuned as two arms of the shared renderer, scored per problem as `syllabus run` scores."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from syllabus.finetune.config import FinetuneConfig
from syllabus.finetune.run import FinetuneResult, _report_data, _write_report


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_finetune_report_pairs_base_and_finetuned_on_the_same_problems(tmp_path):
    config = FinetuneConfig.model_validate(
        {"base": "smollm2", "data": {"datasets": ["x"]}, "eval": {"tasks": ["humaneval"]}}
    )
    out = tmp_path / "out"
    problems = [f"HumanEval/{i}" for i in (0, 1, 2, 10)]
    # Two samples per problem; the fine-tuned model passes more of them.
    for arm, passes in (("base", {0: [1, 0], 1: [0, 0]}), ("finetuned", {0: [1, 1], 1: [1, 0]})):
        rows = [
            {"task_id": task_id, "sample": s, "passed": bool(passes.get(i % 2)[s])}
            for i, task_id in enumerate(problems)
            for s in (0, 1)
        ]
        write_rows(out / "eval" / arm / "tasks" / "humaneval" / "samples.jsonl", rows)
    write_rows(
        out / "train" / "log.jsonl",
        [{"step": 1, "tokens": 64, "loss": 2.0}, {"step": 2, "tokens": 128, "loss": 1.5}],
    )
    audit = {
        "tokens_by_role": {"user": 300, "assistant": 200, "template": 100},
        "trained_tokens": 200,
        "usable": 9,
        "example": "⟦yes⟧",
    }
    result = FinetuneResult(
        out,
        audit,
        {"removed": 1, "removed_ids": ["c3"]},
        {"steps": 2, "tokens_per_s": 100.0, "dtype": "float32", "peak_rss_mib": 512.0},
        data={"conversations": 12, "after_decontam": 11, "train_conversations": 10},
        exports={"base_gguf": "base.gguf", "finetuned_gguf": "finetuned.gguf"},
    )
    recipe = SimpleNamespace(name="ft")
    result.report_data = _report_data(recipe, config, result)
    assert _write_report(result) == out / "report.html"

    data = result.report_data
    assert [arm.name for arm in data.arms] == ["base", "finetuned"]
    # pass@1 per problem over both samples (c / n), problems in natural order.
    assert data.arms[0].eval["humaneval"]["0"] == pytest.approx([0.5, 0.0, 0.5, 0.0])
    assert data.arms[1].eval["humaneval"]["0"] == pytest.approx([1.0, 0.5, 1.0, 0.5])
    assert data.tasks["humaneval"].label == "humaneval (4 problems)"
    funnel = data.arms[1].funnel
    assert [step.token_unit for step in funnel] == [None, None, "tokenizer", "tokenizer"]
    assert [step.tokens for step in funnel] == [None, None, 600, 200]
    assert [point.train_loss for point in data.arms[1].curves["0"]] == [2.0, 1.5]

    results = json.loads((out / "report.json").read_text())
    rows = {row["arm"]: row for row in results["tasks"][0]["rows"]}
    assert rows["base"]["is_baseline"] and rows["finetuned"]["diff"] == pytest.approx(0.5)
    html = (out / "report.html").read_text()
    assert "tokenizer tokens" in html and "33.3%" in html  # 200 of 600, within one unit
    md = (out / "report.md").read_text()
    assert "## Fine-tuning" in md and "Decontamination removed 1 conversations" in md
